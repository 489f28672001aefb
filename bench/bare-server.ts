/**
 * The baseline for the submission benchmark: a bare Fastify handler that drains the body and only does queue.add on
 * the same Redis. Run as its own process, like the gateway, so neither shares a thread with the load generator.
 * Prints its URL on stdout.
 */
import { Queue } from 'bullmq';
import Fastify from 'fastify';
import { redisOptions } from '@photoenhance/queue';

const queue = new Queue('bare', { connection: { ...redisOptions(process.env.REDIS_URL!) }, prefix: 'bench' });
const app = Fastify();
app.addContentTypeParser('multipart/form-data', (_req, payload, done) => {
  payload.resume();
  payload.on('end', () => done(null, undefined));
});
let n = 0;
app.post('/v1/jobs', async (_req, reply) => {
  const job = await queue.add('enhance', { n: n++ }, { removeOnComplete: true });
  return reply.code(202).send({ id: job.id, status: 'queued' });
});
const url = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${url}\n`);
process.on('SIGTERM', () => void app.close().then(() => queue.close()).then(() => process.exit(0)));
