// Library entry: the pieces of walcast that other programs (and the tests) build on.
export { Capture, type CaptureOptions } from './capture/capture.js';
export type { CapturedChange, Transaction, CaptureState } from './capture/types.js';
export type { Relation, Row } from './capture/pgoutput.types.js';
export { parseWalPosition, formatWalPosition, compareWalPositions, type Position } from './protocol/position.js';
export { parseLsn, formatLsn } from './protocol/lsn.js';
export { renderChange, renderLines, type RenderedChange } from './capture/render.js';
export { migrate, loadMigrations, type MigrateResult } from './sql/migrate.js';
export * from './errors.js';
