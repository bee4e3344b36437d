// Declared relation tables: each row of such a table is a Casbin role link, mirrored in memory
// from the change stream (docs/AUTHORIZATION.md §4). A declaration names the table, the link's two ends as
// templates over the row's columns, and the role definition it feeds (g2 unless said):
//
//   "public.room_members {user_id} room:{room_id}"          g2(user, "room:42")
//   "public.friendships {a} friend:{b}"                     g2(a, "friend:b") — declare the
//   "public.friendships {b} friend:{a}"                     reverse too for a symmetric one
//   "public.user_roles {user_id} {role} g"                  g(user, role)
//
// A subject that is one `{column}` is a user id; any other subject (`team:{id}`) is a group, as
// every object is (store.ts, "users and groups are kept apart").
import { ConfigError } from '../errors.js';
import type { Row } from '../capture/pgoutput.types.js';

type Part = string | { col: string };

export interface RelationDecl {
  spec: string;
  /** schema.table */
  table: string;
  subject: Part[];
  /**
   * What the subject side is in the link graph: a user when its template is exactly one
   * `{column}` (`{user_id}`), a group otherwise (`team:{team_id}`). The object side is a group.
   */
  subjectKind: 'u' | 'g';
  object: Part[];
  ptype: string;
  /** Every column the templates read. */
  columns: string[];
}

function template(text: string, spec: string): Part[] {
  const parts: Part[] = [];
  const re = /\{([^{}]+)\}/g;
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m.index > last) parts.push(text.slice(last, m.index));
    parts.push({ col: m[1] });
    last = m.index + m[0].length;
  }
  if (last < text.length) parts.push(text.slice(last));
  if (!parts.some((p) => typeof p !== 'string')) throw bad(spec, `"${text}" reads no column`);
  return parts;
}

function bad(spec: string, why: string): ConfigError {
  return new ConfigError(`bad relation ${JSON.stringify(spec)}: ${why}`, 'a relation is "schema.table SUBJECT OBJECT [g2]", e.g. "public.room_members {user_id} room:{room_id}"');
}

export function parseRelation(spec: string): RelationDecl {
  const words = spec.trim().split(/\s+/);
  if (words.length < 3 || words.length > 4) throw bad(spec, 'expected 3 or 4 words');
  const [table, subj, obj, ptype = 'g2'] = words;
  if (!/^[\w$]+\.[\w$]+$/.test(table)) throw bad(spec, `"${table}" is not schema.table`);
  if (!/^g\d*$/.test(ptype)) throw bad(spec, `"${ptype}" is not a role definition (g, g2, …)`);
  const subject = template(subj, spec);
  const object = template(obj, spec);
  const columns = [...new Set([...subject, ...object].flatMap((p) => (typeof p === 'string' ? [] : [p.col])))];
  const subjectKind = subject.length === 1 && typeof subject[0] !== 'string' ? 'u' : 'g';
  return { spec, table, subject, subjectKind, object, ptype, columns };
}

/** A value as text, the way a condition's `"room:" + r.obj.row.room_id` renders it. */
export function keyText(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

function fill(parts: Part[], row: Row): string | null {
  let s = '';
  for (const p of parts) {
    if (typeof p === 'string') s += p;
    else {
      const t = keyText(row[p.col]);
      if (t === null) return null;
      s += t;
    }
  }
  return s;
}

/** The link a row stands for, or null when a column it needs is null. */
export function linkOf(d: RelationDecl, row: Row): [string, string] | null {
  const a = fill(d.subject, row);
  const b = a === null ? null : fill(d.object, row);
  return a === null || b === null ? null : [a, b];
}
