// A real S3-compatible server (s3rver) in its own process, for tests: node s3rver-process.mjs --dir D [--address A]
// [--port P] [--bucket B]... Prints one JSON line {"ready":true,"address","port"} once it listens; SIGTERM stops it.
import S3rver from 's3rver';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const buckets = args.flatMap((a, i) => (a === '--bucket' ? [args[i + 1]] : []));
const server = new S3rver({
  address: opt('address', '127.0.0.1'),
  port: Number(opt('port', '0')),
  directory: opt('dir'),
  silent: true,
  configureBuckets: buckets.map((name) => ({ name, configs: [] })),
});
const info = await server.run();
process.stdout.write(`${JSON.stringify({ ready: true, address: info.address, port: info.port })}\n`);
const stop = () => {
  server.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
