import fp from 'fastify-plugin';
import type { GatewayConfig } from '../config.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The gateway's settings, loaded and checked once (apps/gateway/src/config.ts). */
    config: Readonly<GatewayConfig>;
  }
}

export const configPlugin = fp<{ config: Readonly<GatewayConfig> }>(
  async (app, opts) => {
    app.decorate('config', opts.config);
  },
  { name: 'gateway-config', fastify: '5.x' },
);
