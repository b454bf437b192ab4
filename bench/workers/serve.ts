// Worker side of the orchestrator's IPC: one request at a time, replies with the request's id.
import type { Envelope, ReplyEnvelope, Request } from '../lib/protocol.js';

export function serve(handle: (request: Request) => Promise<unknown>): void {
  if (!process.send) throw new Error('this bench worker runs under bench/run.ts (it needs an IPC channel)');
  let chain: Promise<void> = Promise.resolve();
  process.on('message', (msg: Envelope) => {
    chain = chain.then(async () => {
      let reply: ReplyEnvelope;
      try {
        reply = { id: msg.id, ok: true, result: await handle(msg.request) };
      } catch (e) {
        reply = { id: msg.id, ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) };
      }
      process.send!(reply);
    });
  });
  process.on('disconnect', () => process.exit(0));
}
