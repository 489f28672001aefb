import yauzl from 'yauzl';
import yazl from 'yazl';

/** Build a ZIP in memory (tests only). `compress: false` stores entries as they are. */
export async function makeZip(entries: Array<{ name: string; data: Buffer; compress?: boolean }>): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  for (const e of entries) zip.addBuffer(e.data, e.name, { compress: e.compress ?? false });
  zip.end();
  const chunks: Buffer[] = [];
  for await (const c of zip.outputStream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/**
 * A ZIP with a parent-relative entry name (`../<name>`), which yazl refuses to write: written as `zz/<name>` and the
 * name patched in place (same length) in the local header and the central directory.
 */
export async function zipWithTraversal(name: string, data: Buffer): Promise<Buffer> {
  const buf = await makeZip([{ name: `zz/${name}`, data }]);
  const from = Buffer.from(`zz/${name}`);
  const to = Buffer.from(`../${name}`);
  let at = 0;
  for (;;) {
    const i = buf.indexOf(from, at);
    if (i < 0) break;
    to.copy(buf, i);
    at = i + to.length;
  }
  return buf;
}

/** Entry names and contents of a ZIP. */
export async function readZip(buf: Buffer): Promise<Map<string, Buffer>> {
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
    yauzl.fromBuffer(buf, { lazyEntries: true }, (err, z) => (err || !z ? reject(err ?? new Error('no zip')) : resolve(z))),
  );
  const out = new Map<string, Buffer>();
  await new Promise<void>((resolve, reject) => {
    zip.on('error', reject);
    zip.on('end', () => resolve());
    zip.on('entry', (entry: yauzl.Entry) => {
      zip.openReadStream(entry, (err, s) => {
        if (err || !s) return reject(err ?? new Error('no stream'));
        const chunks: Buffer[] = [];
        s.on('data', (c: Buffer) => chunks.push(c));
        s.on('end', () => {
          out.set(entry.fileName, Buffer.concat(chunks));
          zip.readEntry();
        });
        s.on('error', reject);
      });
    });
    zip.readEntry();
  });
  return out;
}

/** Read an SSE stream until `stop` says so (or the server closes it); returns the events. */
export async function readSse(
  res: Response,
  stop: (events: Array<{ id?: string; event: string; data: unknown }>) => boolean,
  timeoutMs = 30_000,
): Promise<Array<{ id?: string; event: string; data: unknown }>> {
  const events: Array<{ id?: string; event: string; data: unknown }> = [];
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  const deadline = setTimeout(() => void reader.cancel(), timeoutMs);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const ev: { id?: string; event: string; data: unknown } = { event: 'message', data: undefined };
        for (const line of block.split('\n')) {
          if (line.startsWith('id: ')) ev.id = line.slice(4);
          else if (line.startsWith('event: ')) ev.event = line.slice(7);
          else if (line.startsWith('data: ')) ev.data = JSON.parse(line.slice(6));
        }
        if (block.startsWith(':')) continue;
        events.push(ev);
        if (stop(events)) {
          await reader.cancel();
          return events;
        }
      }
    }
  } finally {
    clearTimeout(deadline);
  }
  return events;
}
