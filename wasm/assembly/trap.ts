/** abort() replacement: trap, so the module needs no host imports besides its memory. */
export function trapAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  unreachable();
}
