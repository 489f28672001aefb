/**
 * The peer for the intake benchmark (bench/intake.ts): a minimal gateway, Fastify + @fastify/multipart streaming the
 * upload to a file, then queue.add on the same Redis, and nothing else (no type check, no integrity check, no
 * options, no admission, no record, no idempotency). Not an upper bound like a handler that drains the body unread:
 * it does the work any gateway must do. Run as its own process, like the gateway. Prints its URL on stdout.
 * Also the peer for the scale bench's upload-RSS figure (bench/scale.ts), where it listens on a namespace's address
 * (HOST, PORT) and takes uploads up to MAX_UPLOAD_BYTES, as the gateway does there.
 */
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import multipart from '@fastify/multipart';
import { Queue } from 'bullmq';
import Fastify from 'fastify';
import { redisOptions } from '@photoenhance/queue';

const dir = process.env.STORAGE_DIR!;
await mkdir(dir, { recursive: true });
const queue = new Queue('minimal', { connection: { ...redisOptions(process.env.REDIS_URL!) }, prefix: 'bench' });
const app = Fastify();
await app.register(multipart, { limits: { fileSize: Number(process.env.MAX_UPLOAD_BYTES ?? 50 * 1024 * 1024), files: 1 } });
let n = 0;
app.post('/v1/jobs', async (req, reply) => {
  const id = `m${process.pid}_${n++}`;
  const path = join(dir, `${id}.jpg`);
  let stored = false;
  for await (const part of req.parts()) {
    if (part.type === 'file') {
      await pipeline(part.file, createWriteStream(path));
      stored = true;
    }
  }
  if (!stored) return reply.code(400).send({ error: 'no file' });
  await queue.add('enhance', { id, path }, { jobId: id, removeOnComplete: true });
  return reply.code(202).send({ id, status: 'queued' });
});
const url = await app.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 0) });
process.stdout.write(`${url}\n`);
process.on(
  'SIGTERM',
  () =>
    void app
      .close()
      .then(() => queue.close())
      .then(() => process.exit(0)),
);
