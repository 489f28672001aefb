import type { ThemeTokenName } from '@bull-board/api/dist/types.js';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type HTTPMethods } from 'fastify';

export const BULL_BOARD_PATH = '/admin/queues';

/**
 * The dashboard's palette (apps/dashboard/web/styles.css) as bull-board design tokens. The dashboard has one, dark,
 * scheme, so both of bull-board's schemes get it: the board looks the same whatever its own light/dark setting says.
 * Fonts are the system ones (bull-board's IBM Plex would come from Google, and nothing is fetched from outside).
 */
const PALETTE = {
  bg: '#0b1120',
  panel: '#111a2e',
  panel2: '#16213a',
  line: '#22304d',
  text: '#e2e8f0',
  muted: '#8b9ab4',
  blue: '#60a5fa',
  green: '#34d399',
  amber: '#fbbf24',
  red: '#f87171',
};
export const BULL_BOARD_THEME: Partial<Record<ThemeTokenName, string>> = {
  background: PALETTE.bg,
  foreground: PALETTE.text,
  card: PALETTE.panel,
  'card-foreground': PALETTE.text,
  popover: PALETTE.panel2,
  'popover-foreground': PALETTE.text,
  primary: PALETTE.blue,
  'primary-foreground': PALETTE.bg,
  secondary: PALETTE.panel2,
  'secondary-foreground': PALETTE.text,
  muted: PALETTE.panel2,
  'muted-foreground': PALETTE.muted,
  accent: PALETTE.panel2,
  'accent-foreground': PALETTE.text,
  'state-hover': PALETTE.panel2,
  'state-selected': PALETTE.line,
  'state-selected-hover': PALETTE.line,
  'state-selected-foreground': PALETTE.text,
  destructive: PALETTE.red,
  'destructive-foreground': PALETTE.bg,
  border: PALETTE.line,
  input: PALETTE.line,
  ring: PALETTE.blue,
  sidebar: PALETTE.panel,
  'sidebar-foreground': PALETTE.text,
  'sidebar-primary': PALETTE.blue,
  'sidebar-primary-foreground': PALETTE.bg,
  'sidebar-accent': PALETTE.panel2,
  'sidebar-accent-foreground': PALETTE.text,
  'sidebar-state-hover': PALETTE.panel2,
  'sidebar-state-selected': PALETTE.line,
  'sidebar-state-selected-hover': PALETTE.line,
  'sidebar-state-selected-foreground': PALETTE.text,
  'sidebar-border': PALETTE.line,
  'sidebar-ring': PALETTE.blue,
  'status-failed': PALETTE.red,
  'status-completed': PALETTE.green,
  'status-waiting': PALETTE.amber,
  'status-active': PALETTE.blue,
  'font-sans': "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
  'font-mono': 'ui-monospace, SFMono-Regular, Menlo, monospace',
};

/** Hop-by-hop and length headers of the board's answer: the gateway's own reply sets its own. */
const SKIP_HEADERS = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'date']);

/**
 * bull-board at /admin/queues: the generic BullMQ view of every engine queue, read-only unless BULL_BOARD_READONLY=false.
 * Engine queues that appear later (a new worker announces an engine) are added by `sync`.
 *
 * Loaded on the first request: bull-board (its API, BullMQ adapter, Fastify adapter, views and static files) costs
 * 5-8 MiB resident, and most gateways never serve it. Fastify cannot add routes once it listens, so the gateway
 * registers its routes now (operator auth, security headers and logging apply to them like to any route) and, on the
 * first request, builds the board in a private Fastify instance that never listens; each request is passed to it with
 * inject() and its answer sent back as the gateway's own.
 */
export async function mountBullBoard(app: FastifyInstance): Promise<{ sync(engines: string[]): void }> {
  const readOnlyMode = app.config.bullBoardReadOnly;
  const shown = new Set<string>((await app.engines.list()).map((e) => e.name));
  let board: { addQueue(engine: string): void; inject: FastifyInstance['inject'] } | undefined;
  let loading: Promise<NonNullable<typeof board>> | undefined;
  let closeInner: (() => Promise<void>) | undefined;
  app.addHook('onClose', async () => closeInner?.());

  const load = async (): Promise<NonNullable<typeof board>> => {
    const [{ createBullBoard }, { BullMQAdapter }, { FastifyAdapter }] = await Promise.all([
      import('@bull-board/api'),
      import('@bull-board/api/bullMQAdapter'),
      import('@bull-board/fastify'),
    ]);
    const serverAdapter = new FastifyAdapter();
    serverAdapter.setBasePath(BULL_BOARD_PATH);
    const adapter = (engine: string) =>
      new BullMQAdapter(app.jobs.queue(engine), { readOnlyMode, allowRetries: !readOnlyMode, displayName: engine });
    const onBoard = new Set(shown);
    const created = createBullBoard({
      queues: [...onBoard].map(adapter),
      serverAdapter,
      options: {
        uiConfig: {
          boardTitle: 'PhotoEnhance queues',
          miscLinks: [{ text: 'Dashboard', url: '/dashboard/' }],
          hideDocsLink: true,
          theme: { light: BULL_BOARD_THEME, dark: BULL_BOARD_THEME },
        },
      },
    });
    const inner = Fastify({ logger: false });
    // A path the board does not know answers as any unknown route of the gateway (problem+json ROUTE_NOT_FOUND).
    inner.setNotFoundHandler((_req, reply) => reply.code(404).header('x-bull-board-not-found', '1').send());
    await inner.register(serverAdapter.registerPlugin(), { prefix: BULL_BOARD_PATH });
    await inner.ready();
    closeInner = () => inner.close();
    const addQueue = (engine: string): void => {
      if (onBoard.has(engine)) return;
      onBoard.add(engine);
      created.addQueue(adapter(engine));
    };
    // Engines announced while the board was loading.
    for (const e of shown) addQueue(e);
    // Set here, not by the awaiting request, so a sync() from now on reaches the board.
    board = { addQueue, inject: inner.inject.bind(inner) };
    return board;
  };

  const handler = async (req: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    if (!board) {
      loading ??= load().catch((err: unknown) => {
        loading = undefined;
        throw err;
      });
      board = await loading;
    }
    const headers = { ...req.headers };
    delete headers['content-length'];
    delete headers['transfer-encoding'];
    const res = await board.inject({
      method: req.method as HTTPMethods,
      url: req.url,
      headers,
      // The gateway's parsers already read the body (JSON, as bull-board's API sends): passed on as JSON again.
      ...(req.body !== undefined ? { payload: typeof req.body === 'string' ? req.body : JSON.stringify(req.body) } : {}),
    });
    if (res.headers['x-bull-board-not-found']) return reply.callNotFound();
    reply.code(res.statusCode);
    for (const [k, v] of Object.entries(res.headers)) if (v !== undefined && !SKIP_HEADERS.has(k.toLowerCase())) reply.header(k, v);
    if (!String(res.headers['content-type'] ?? '').includes('text/html')) return reply.send(res.rawPayload);
    // bull-board's page links Google's web fonts: nothing is fetched from outside (docs/dashboard.md), so the link is
    // taken out of its HTML and the page falls back to the system fonts.
    return reply.send(res.payload.replace(/<link[^>]+href="https:\/\/fonts\.(googleapis|gstatic)\.com[^>]*>/g, ''));
  };
  // Not part of the API: kept out of the OpenAPI document.
  const methods: HTTPMethods[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];
  for (const url of [BULL_BOARD_PATH, `${BULL_BOARD_PATH}/*`]) app.route({ method: methods, url, schema: { hide: true }, handler });
  return {
    sync(engines) {
      for (const e of engines) {
        if (shown.has(e)) continue;
        shown.add(e);
        board?.addQueue(e);
      }
    },
  };
}
