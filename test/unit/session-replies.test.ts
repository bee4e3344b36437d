// Session replies under a ReplyBatch (a drain of waiting client messages): deferred, then one
// corked flush per session at the end of the batch; a close within the batch sends the replies
// first; without a batch, a reply is sent at once.
import t from 'tap';
import type { WebSocket } from 'uWebSockets.js';
import { ReplyBatch, Session, type SessionData } from '../../src/server/session.js';

function fakeWs() {
  const events: string[] = [];
  const ws = {
    cork(fn: () => void) {
      events.push('cork');
      fn();
    },
    send(frame: string) {
      events.push(`send ${frame}`);
      return 1;
    },
    getBufferedAmount: () => 0,
    end(code: number) {
      events.push(`end ${code}`);
    },
  };
  return { ws: ws as unknown as WebSocket<SessionData>, events };
}

t.test('without a batch a reply is sent at once', async (t) => {
  const { ws, events } = fakeWs();
  const s = new Session(ws, 1 << 20, () => {});
  s.replies = new ReplyBatch();
  s.reply('a');
  s.reply('b');
  t.same(events, ['cork', 'send a', 'cork', 'send b']);
});

t.test('within a batch: one flush per session at its end', async (t) => {
  const { ws, events } = fakeWs();
  const s = new Session(ws, 1 << 20, () => {});
  const batch = new ReplyBatch();
  s.replies = batch;
  batch.run(() => {
    s.reply('a');
    s.reply('b');
    t.same(events, [], 'nothing sent yet');
  });
  t.same(events, ['cork', 'send a', 'send b']);
  s.reply('c');
  t.same(events.slice(3), ['cork', 'send c'], 'after the batch: at once again');
});

t.test('a close within a batch sends the deferred replies first', async (t) => {
  const { ws, events } = fakeWs();
  const s = new Session(ws, 1 << 20, () => {});
  const batch = new ReplyBatch();
  s.replies = batch;
  batch.run(() => {
    s.reply('error');
    s.end(4001, 'refused');
  });
  t.same(events, ['cork', 'send error', 'end 4001']);
});
