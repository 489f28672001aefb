import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyInstance } from 'fastify';

export const BULL_BOARD_PATH = '/admin/queues';

/**
 * bull-board at /admin/queues: the generic BullMQ view of every engine queue, read-only unless BULL_BOARD_READONLY=false.
 * Engine queues that appear later (a new worker announces an engine) are added by `sync`.
 */
export async function mountBullBoard(app: FastifyInstance): Promise<{ sync(engines: string[]): void }> {
  const readOnlyMode = app.config.bullBoardReadOnly;
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(BULL_BOARD_PATH);
  const shown = new Set<string>();
  const initial = (await app.engines.list()).map((e) => e.name);
  const adapter = (engine: string): BullMQAdapter => new BullMQAdapter(app.jobs.queue(engine), { readOnlyMode, allowRetries: !readOnlyMode, displayName: engine });
  initial.forEach((e) => shown.add(e));
  const board = createBullBoard({
    queues: initial.map(adapter),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'PhotoEnhance queues', miscLinks: [{ text: 'Dashboard', url: '/dashboard/' }] } },
  });
  // bull-board's routes carry no schemas of ours: keep them out of the OpenAPI document.
  await app.register(async (scope) => {
    scope.addHook('onRoute', (route) => {
      route.schema = { ...(route.schema ?? {}), hide: true };
    });
    // bull-board's page links Google's web fonts: nothing is fetched from outside (docs/dashboard.md), so the link is
    // taken out of its HTML and the page falls back to the system fonts.
    scope.addHook('onSend', async (_req, reply, payload) => {
      if (typeof payload !== 'string' || !String(reply.getHeader('content-type') ?? '').includes('text/html')) return payload;
      return payload.replace(/<link[^>]+href="https:\/\/fonts\.(googleapis|gstatic)\.com[^>]*>/g, '');
    });
    await scope.register(serverAdapter.registerPlugin(), { prefix: BULL_BOARD_PATH });
  });
  return {
    sync(engines) {
      for (const e of engines) {
        if (shown.has(e)) continue;
        shown.add(e);
        board.addQueue(adapter(e));
      }
    },
  };
}
