// The HTTP routes `walcast dev` adds on the daemon's port (and only `walcast dev`): the demo page,
// the client SDK's modules, and a tiny backend for the demo: tokens for the demo users, the
// rooms and friends of a user, a room's recent messages and sending a message. Reads and writes
// check membership in SQL; everything realtime goes through the daemon itself, authorized by
// the policies of src/dev/schema.ts.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import type { HttpRequest, TemplatedApp } from 'uWebSockets.js';
import type { Logger } from '../log.js';
import { packageRoot } from '../util/package-root.js';
import { json, problem, Responder, type Reply } from './http.js';
import { DEMO_USERS } from './schema.js';
import type { DemoKeys } from './tokens.js';

export interface DevRoutesOptions {
  db: pg.Pool;
  keys: DemoKeys;
  log: Logger;
  /** The package's root (holding demo/ and dist/src/client/); found from this file by default. */
  root?: string;
}

/** Largest POST /dev/messages request, and longest message. */
export const MAX_REQUEST_BYTES = 16 * 1024;
export const MAX_MESSAGE_CHARS = 2000;

const DEMO_FILE = /^[a-z-]+\.(?:js|css)$/;
const CLIENT_FILE = /^[a-z-]+\.js$/;
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

export function devRoutes(o: DevRoutesOptions): (app: TemplatedApp) => void {
  const root = o.root ?? packageRoot();
  const demoDir = path.join(root, 'demo');
  const clientDir = path.join(root, 'dist', 'src', 'client');
  const users = new Set<string>(DEMO_USERS);
  const fail = (err: unknown) => o.log.error({ err }, 'walcast dev: request failed');

  /** `name` has been checked against a pattern without dots or slashes: it stays in `dir`. */
  const file = async (dir: string, name: string): Promise<Reply> => {
    try {
      return { status: 200, body: await readFile(path.join(dir, name)), type: TYPES[path.extname(name)] ?? 'application/octet-stream' };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return problem(404, `no file ${name}`);
      throw err;
    }
  };

  /** The user a bearer token names, or a 401 reply. */
  const identify = async (token: string | null): Promise<string | Reply> => {
    if (!token) return problem(401, 'a token is needed (Authorization: Bearer TOKEN)');
    try {
      return (await o.keys.verify(token)).identity.id;
    } catch (err) {
      return problem(401, `bad token: ${(err as Error).message}`);
    }
  };

  return (app) => {
    app.get('/', (res) => new Responder(res).reply(file(demoDir, 'index.html'), fail));
    app.get('/demo/:file', (res, req) => {
      const name = req.getParameter(0) ?? '';
      const r = new Responder(res);
      r.reply(DEMO_FILE.test(name) ? file(demoDir, name) : Promise.resolve(problem(404, 'no such file')), fail);
    });
    // The SDK as the browser loads it: dist/src/client/*.js, plain ES modules with relative imports.
    app.get('/client/:file', (res, req) => {
      const name = req.getParameter(0) ?? '';
      const r = new Responder(res);
      r.reply(CLIENT_FILE.test(name) ? file(clientDir, name) : Promise.resolve(problem(404, 'no such file')), fail);
    });

    app.get('/dev/users', (res) => new Responder(res).send(json(200, { users: DEMO_USERS })));

    // Anyone who can reach this port may be any demo user: that is the demo. The daemon listens
    // on 127.0.0.1, and the key changes with every run.
    app.get('/dev/token', (res, req) => {
      const user = req.getQuery('user') ?? '';
      const r = new Responder(res);
      if (!users.has(user)) {
        r.send(problem(404, `no demo user ${JSON.stringify(user)}; the demo users are ${DEMO_USERS.join(', ')}`));
        return;
      }
      r.reply(
        o.keys.mint(user).then(({ token, expiresAt }) => json(200, { user, token, expires_at: new Date(expiresAt).toISOString() })),
        fail,
      );
    });

    app.get('/dev/rooms', (res, req) => {
      const token = bearer(req);
      const r = new Responder(res);
      r.reply(
        (async () => {
          const user = await identify(token);
          if (typeof user !== 'string') return user;
          const rooms = await o.db.query<{ id: number; name: string; member: boolean }>(
            `select r.id, r.name, exists (select 1 from public.room_members m where m.room_id = r.id and m.user_id = $1) as member
               from public.rooms r order by r.id`,
            [user],
          );
          const friends = await o.db.query<{ friend: string }>(
            `select distinct case when a = $1 then b else a end as friend from public.friendships where a = $1 or b = $1 order by 1`,
            [user],
          );
          return json(200, { user, rooms: rooms.rows, friends: friends.rows.map((f) => f.friend) });
        })(),
        fail,
      );
    });

    // Sends a message: {token, room_id, body}. The author is the token's subject, and the insert
    // happens only if that user is a member of the room (checked in the same statement).
    app.post('/dev/messages', (res, req) => {
      const r = new Responder(res);
      const length = Number(req.getHeader('content-length') || 0);
      if (length > MAX_REQUEST_BYTES) {
        r.send(problem(413, `the request body is at most ${MAX_REQUEST_BYTES} bytes`), true);
        return;
      }
      r.readBody(MAX_REQUEST_BYTES, (raw) => r.reply(postMessage(raw), fail));
    });
    app.any('/dev/*', (res) => new Responder(res).send(problem(404, 'dev routes: GET /dev/users, GET /dev/token?user=, GET /dev/rooms, POST /dev/messages (the page loads messages with a snapshot subscription)')));
  };

  async function postMessage(raw: Buffer): Promise<Reply> {
    let input: unknown;
    try {
      input = JSON.parse(raw.toString('utf8'));
    } catch {
      return problem(400, 'the body must be JSON: {"token", "room_id", "body"}');
    }
    if (!input || typeof input !== 'object' || Array.isArray(input)) return problem(400, 'the body must be a JSON object: {"token", "room_id", "body"}');
    const { token, room_id, body } = input as Record<string, unknown>;
    const user = await identify(typeof token === 'string' ? token : null);
    if (typeof user !== 'string') return user;
    const room = roomId(room_id);
    if (room === null) return problem(400, 'room_id must be a positive integer');
    if (typeof body !== 'string' || body.trim() === '' || [...body].length > MAX_MESSAGE_CHARS) {
      return problem(400, `body must be a non-blank string of at most ${MAX_MESSAGE_CHARS} characters`);
    }
    const inserted = await o.db.query<MessageRow>(
      `insert into public.messages (room_id, author, body)
       select $1::int, $2::text, $3::text
        where exists (select 1 from public.room_members where user_id = $2::text and room_id = $1::int)
       returning id, room_id, author, body, created_at`,
      [room, user, body],
    );
    if (inserted.rows.length === 0) return problem(403, `${user} is not a member of room ${room}`);
    return json(201, { message: message(inserted.rows[0]) });
  }
}

interface MessageRow {
  id: string;
  room_id: number;
  author: string;
  body: string;
  created_at: Date;
}

/** As the daemon renders the row (int8 as a number, timestamptz in ISO UTC). */
function message(row: MessageRow) {
  return { id: Number(row.id), room_id: row.room_id, author: row.author, body: row.body, created_at: row.created_at.toISOString() };
}

function bearer(req: HttpRequest): string | null {
  const m = /^Bearer\s+(\S+)$/i.exec(req.getHeader('authorization'));
  return m ? m[1] : null;
}

function roomId(v: unknown): number | null {
  const n = typeof v === 'string' && /^[0-9]{1,9}$/.test(v) ? Number(v) : v;
  return typeof n === 'number' && Number.isInteger(n) && n > 0 && n <= 2 ** 31 - 1 ? n : null;
}
