// A subscription gets the changes of its own table only, on catch-up as live: the ring holds
// every table's transactions, and a catch-up walks them all (found while moving SQL broadcasts
// to walcast.broadcasts, issue #11: a resume under --no-auth received other tables' rows).
import t from 'tap';
import type { Relation } from '../../src/capture/pgoutput.types.js';
import type { CapturedChange as Change, Transaction } from '../../src/capture/types.js';
import { HistoryRing, LAST_INDEX } from '../../src/history/ring.js';
import { compileFilter, parseFilter } from '../../src/hub/filter.js';
import { Hub } from '../../src/hub/hub.js';
import { FakePeer, relation } from '../helpers/fake-peer.js';

const columns = [{ name: 'id', typeOid: 23 }];
const [mine, other] = [relation('mine', { columns }), relation('other', { columns })];

let lsn = 0x2000n;
function tx(...changes: Array<[Relation, number]>): Transaction {
  lsn += 0x100n;
  return {
    xid: 1, lsn, lsnText: `0/${lsn.toString(16).toUpperCase()}`, endLsn: lsn + 8n, commitTime: new Date().toISOString(),
    changes: changes.map(([relation, id], index) => ({ index, tag: 'insert', relation, new: { id } }) as Change),
  };
}
const settle = () => new Promise((r) => setImmediate(r));

t.test('catch-up and live: only the subscribed table', async (t) => {
  const hub = new Hub({ ring: new HistoryRing({ maxBytes: 1e9, maxAgeMs: 1e9 }) });
  hub.reset({ lsn: 0xfffn, index: LAST_INDEX }, null);
  hub.onTransaction(tx([other, 1], [mine, 2]));
  hub.onTransaction(tx([other, 3]));
  const peer = new FakePeer();
  hub.subscribe({ peer, id: 's', table: 'public.mine', predicate: compileFilter(parseFilter(''), columns), indexTerm: null, events: null, since: { lsn: 0x1000n, index: 0 } });
  for (let i = 0; i < 5; i++) await settle();
  hub.onTransaction(tx([other, 4], [mine, 5]));
  for (let i = 0; i < 5; i++) await settle();
  const got = peer.frames.filter((f) => f.type === 'change').map((f) => `${f.table}:${(f.new as { id: number }).id}`);
  t.same(got, ['public.mine:2', 'public.mine:5'], 'the rows of public.mine, caught up then live; none of public.other');
});
