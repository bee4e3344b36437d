// Errors answered to clients (docs/PROTOCOL.md, `error`): WireError subclasses carry the `ref`
// of the frame and, for subscribe/unsubscribe, its valid `id`, as own properties (WireContext),
// so the reply can echo them; and the wording that quotes client values in their messages.
import { BadRequestError, type WireError } from '../errors.js';
import { errorMsg, type Frame } from './frames.js';
import { isId, isRef } from './limits.js';
import type { WireContext, WireErrorCode } from './types.js';

/** Attaches `ref`/`id` (when defined) to a wire error as own properties and returns it. */
export function withContext<E extends WireError>(err: E, ctx: WireContext): E & WireContext {
  const e = err as E & WireContext;
  if (ctx.ref !== undefined) e.ref = ctx.ref;
  if (ctx.id !== undefined) e.id = ctx.id;
  return e;
}

/** The `ref`/`id` a thrown error carries (see withContext). */
export function contextOf(err: unknown): WireContext {
  if (typeof err !== 'object' || err === null) return {};
  const e = err as WireContext;
  const ctx: WireContext = {};
  if (isRef(e.ref)) ctx.ref = e.ref;
  if (isId(e.id)) ctx.id = e.id;
  return ctx;
}

/** The `error` message for a wire error: its code and message, `ref`/`id` from ctx or the error. */
export function errorMsgFrom(err: WireError, ctx?: WireContext): Frame<'error'> {
  const own = contextOf(err);
  return errorMsg(err.code as WireErrorCode, err.message, ctx?.ref ?? own.ref, ctx?.id ?? own.id);
}

/** Throws a BadRequestError with `ctx` attached. */
export function badRequest(message: string, ctx: WireContext, cause?: unknown): never {
  throw withContext(new BadRequestError(message, undefined, cause === undefined ? undefined : { cause }), ctx);
}

/** A client value as an error message names it: its kind, and strings quoted and clipped. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  switch (typeof v) {
    case 'string':
      return v.length === 0 ? 'an empty string' : `the string ${JSON.stringify(clip(v))}`;
    case 'number':
      return Number.isFinite(v) ? `the number ${v}` : 'a number out of range';
    case 'boolean':
      return String(v);
    case 'object':
      return 'an object';
    default:
      return typeof v;
  }
}

/** At most 64 characters of a client string, for error messages. */
export function clip(s: string): string {
  return s.length > 64 ? s.slice(0, 64) + '…' : s;
}
