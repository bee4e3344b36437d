// A phx_join's `config.postgres_changes`: validated, given ids, and turned into walcast
// subscribe messages (one per table). Supabase's filter syntax is translated by filter.ts.
import { BadRequestError } from '../errors.js';
import { LIMITS } from '../protocol/limits.js';
import type { ChangeEvent } from '../protocol/types.js';
import { translateSupabaseFilter } from './filter.js';

/** A postgres_changes entry as the client sent it. */
export interface BindingRequest {
  event: string;
  schema: string;
  table: string | null;
  filter: string | null;
  /** The walcast filter text it translates to ('' for none). */
  walcastFilter: string;
  /** walcast's `events`, absent for `*`. */
  events: ChangeEvent[] | undefined;
  /** event, schema, table and filter exactly as sent: the join reply echoes them, and realtime-js compares. */
  raw: Record<string, unknown>;
}

const EVENTS: Readonly<Record<string, ChangeEvent[] | undefined>> = {
  '*': undefined,
  INSERT: ['insert'],
  UPDATE: ['update'],
  DELETE: ['delete'],
};

/** Reads `config.postgres_changes`; BadRequestError / BadFilterError say what is wrong. */
export function readBindings(value: unknown, max: number): BindingRequest[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new BadRequestError('config.postgres_changes must be an array');
  if (value.length > max) throw new BadRequestError(`at most ${max} postgres_changes bindings per channel`);
  return value.map((v, i) => readBinding(v, i));
}

function readBinding(v: unknown, i: number): BindingRequest {
  const where = `config.postgres_changes[${i}]`;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new BadRequestError(`${where} must be an object`);
  const o = v as Record<string, unknown>;
  const event = o.event;
  if (typeof event !== 'string' || !(event.toUpperCase() in EVENTS)) throw new BadRequestError(`${where}.event must be "*", "INSERT", "UPDATE" or "DELETE"`);
  const schema = o.schema ?? 'public';
  if (typeof schema !== 'string' || schema === '' || Buffer.byteLength(schema) > LIMITS.identifierBytes) throw new BadRequestError(`${where}.schema must be a schema name`);
  if (schema === '*') throw new BadRequestError(`${where}.schema "*" is not supported by walcast: name a schema`);
  const table = o.table === undefined || o.table === null || o.table === '*' ? null : o.table;
  if (table !== null && (typeof table !== 'string' || table === '' || Buffer.byteLength(table) > LIMITS.identifierBytes)) throw new BadRequestError(`${where}.table must be a table name`);
  const filter = o.filter === undefined || o.filter === null || o.filter === '' ? null : o.filter;
  if (filter !== null && typeof filter !== 'string') throw new BadRequestError(`${where}.filter must be a string`);
  return {
    event,
    schema,
    table: table as string | null,
    filter: filter as string | null,
    walcastFilter: translateSupabaseFilter(filter as string | null).text,
    events: EVENTS[event.toUpperCase()],
    raw: { event, schema: o.schema, table: o.table, filter: o.filter },
  };
}

/**
 * A binding's id: the same for the same binding on any connection (so that frames are shared by
 * the clients of a channel), distinct within one join, never 0 (realtime-js tests it for truth).
 */
export function bindingId(b: BindingRequest, taken: ReadonlySet<number>): number {
  let h = 0x811c9dc5;
  const text = JSON.stringify([b.event, b.schema, b.table, b.filter]);
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  let id = (h % 0x7fffffff) + 1;
  while (taken.has(id)) id = (id % 0x7fffffff) + 1;
  return id;
}

/** The binding as the join reply echoes it (realtime-js compares event, schema, table and filter), with its id. */
export function echo(b: BindingRequest, id: number): Record<string, unknown> {
  return { ...b.raw, id };
}
