// `walcast status`: which slots are known to stream the walcast publication, and how.
import t from 'tap';
import { publicationsOf, walcastEvidence } from '../../src/cli/status-slots.js';

t.test('the publications a walsender\'s START_REPLICATION names', async (t) => {
  // As src/capture/stream.ts sends it.
  t.same(publicationsOf(`START_REPLICATION SLOT "walcast" LOGICAL 0/1A2B (proto_version '1', publication_names '"walcast"', messages 'false')`), ['walcast']);
  t.same(publicationsOf(`START_REPLICATION SLOT s LOGICAL 0/0 (proto_version '1', publication_names 'Alpha, "Be""ta",gamma')`), ['alpha', 'Be"ta', 'gamma'], 'bare names lower-cased, quoted ones as written');
  t.same(publicationsOf(`start_replication slot s logical 0/0 (publication_names '"it''s"')`), ["it's"], "'' in the string");
  t.equal(publicationsOf(null), null, 'inactive: no command');
  t.equal(publicationsOf('<insufficient privilege>'), null, 'hidden from this role');
  t.equal(publicationsOf('IDENTIFY_SYSTEM'), null);
  t.equal(publicationsOf(`select * from pg_logical_slot_get_changes('s', null, null, 'publication_names', 'walcast')`), null, 'SQL, not a walsender command');
});

t.test('walcast or not, from the surest evidence there is', async (t) => {
  const known = { walcastSlot: 'walcast', daemonSlot: 'walcast_b' };
  const start = (pub: string) => `START_REPLICATION SLOT "x" LOGICAL 0/0 (proto_version '1', publication_names '"${pub}"')`;
  t.same(walcastEvidence({ name: 'walcast', plugin: 'test_decoding', command: null }, known), { walcast: false, from: 'plugin' }, 'not pgoutput: never walcast, whatever its name');
  t.same(walcastEvidence({ name: 'walcast', plugin: 'pgoutput', command: start('other') }, known), { walcast: false, from: 'walsender' }, 'its reader streams another publication, whatever its name');
  t.same(walcastEvidence({ name: 'x', plugin: 'pgoutput', command: start('walcast') }, known), { walcast: true, from: 'walsender' });
  t.same(walcastEvidence({ name: 'walcast_b', plugin: 'pgoutput', command: '<insufficient privilege>' }, known), { walcast: true, from: 'daemon' }, "the daemon's /status names it");
  t.same(walcastEvidence({ name: 'walcast', plugin: 'pgoutput', command: null }, known), { walcast: true, from: 'config' }, 'WALCAST_SLOT (or the default) names it');
  t.same(walcastEvidence({ name: 'walcast_c', plugin: 'pgoutput', command: null }, known), { walcast: null, from: null }, 'a pgoutput slot nothing tells about: unknown');
});
