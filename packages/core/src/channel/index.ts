/**
 * The client channel: a mounted filesystem served to other threads (server.ts) and used
 * from them (client.ts) over one MessagePort per client, with file data copied by the
 * client straight between its buffers and the page cache's folios in the shared wasm
 * memory (protocol.ts: the wire format, leases, limits, the ordering rule).
 */
export { serveFilesystem, FilesystemServer, type ServeOptions, type ServerStats } from './server.js';
export { connectFilesystem, FilesystemClient, ClientFileHandle } from './client.js';
export { CHANNEL_PROTOCOL_VERSION, type FilesystemHandle } from './protocol.js';
