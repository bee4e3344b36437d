// One live node per --node-id: a node answers on `walcast.<ns>.id.<id>` while it runs, and a
// node starting under the same id that hears an answer stops with node_id_in_use. Two nodes
// starting at the same moment both hear each other (each subscribes before asking, and ignores
// only its own answer). A crashed node does not answer: restarting under its id is fine.
import { randomUUID } from 'node:crypto';
import { createInbox, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { CLUSTER } from '../constants.js';
import { NodeIdInUseError } from '../errors.js';
import { nodeIdSubject } from './subjects.js';

/** Claims the id: resolves with the subscription that answers for it (unsubscribe at stop). */
export async function claimNodeId(nc: NatsConnection, ns: string, nodeId: string): Promise<Subscription> {
  const subject = nodeIdSubject(ns, nodeId);
  const me = randomUUID();
  const since = new Date().toISOString();
  const answer = nc.subscribe(subject, {
    callback: (err, msg) => {
      if (!err && msg.reply) msg.respond(JSON.stringify({ node: nodeId, inc: me, since }));
    },
  });
  const inbox = createInbox();
  const others: Array<{ since?: string }> = [];
  const replies = nc.subscribe(inbox, {
    callback: (err, msg) => {
      if (err) return;
      try {
        const v = JSON.parse(msg.string()) as { inc?: string; since?: string };
        if (v.inc !== me) others.push(v);
      } catch {
        // not ours
      }
    },
  });
  await nc.flush();
  nc.publish(subject, '', { reply: inbox });
  await new Promise((r) => setTimeout(r, CLUSTER.nodeIdProbeMs));
  replies.unsubscribe();
  if (others.length > 0) {
    answer.unsubscribe();
    throw new NodeIdInUseError(
      `another live node of this cluster runs as --node-id ${JSON.stringify(nodeId)} (since ${others[0].since ?? '?'})`,
      'give each node its own --node-id (WALCAST_NODE_ID)',
    );
  }
  return answer;
}
