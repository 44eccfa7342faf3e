/**
 * What one hop's message costs this machine before any model work: the round trip of a
 * 3,072-byte activation frame (the `small` preset's hidden row) to another process over loopback
 * HTTP with keep-alive, as agents send them, once back to back and once after the caller computed
 * for a while (the receiving process sat idle, as every hop of a chain does while the others
 * work). The difference is the machine's wake-up latency, which a chain pays at every hop.
 *
 *   npm run bench:loopback -- [--calls 2000] [--busy-ms 5]
 */
import { spawn } from 'node:child_process';
import { request, Agent } from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { calls: { type: 'string', default: '2000' }, 'busy-ms': { type: 'string', default: '5' }, serve: { type: 'boolean', default: false } } });

if (values.serve) {
  const { createServer } = await import('node:http');
  const srv = createServer((req, res) => {
    req.on('data', () => undefined);
    req.on('end', () => res.end(Buffer.alloc(900, 1)));
  });
  srv.listen(0, '127.0.0.1', () => process.stdout.write(`${(srv.address() as { port: number }).port}\n`));
} else {
  const calls = Number(values.calls);
  const busyMs = Number(values['busy-ms']);
  const child = spawn(process.execPath, ['--import', 'tsx', import.meta.filename, '--serve'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
      child.once('exit', () => reject(new Error('server exited')));
    });
    const agent = new Agent({ keepAlive: true });
    const body = Buffer.alloc(3072, 7);
    const once = () =>
      new Promise<void>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/', agent, headers: { 'content-length': body.length } }, (res) => {
          res.on('data', () => undefined);
          res.on('end', resolve);
        });
        req.on('error', reject);
        req.end(body);
      });
    const busy = (ms: number) => {
      const end = performance.now() + ms;
      while (performance.now() < end);
    };
    for (let i = 0; i < 300; i++) await once();
    const hot: number[] = [];
    const idle: number[] = [];
    // Alternate the two kinds so load drift hits both.
    for (let i = 0; i < calls; i++) {
      let t = performance.now();
      await once();
      hot.push(performance.now() - t);
      if (i % 4 === 0) {
        busy(busyMs);
        t = performance.now();
        await once();
        idle.push(performance.now() - t);
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    console.table({
      'back to back': { 'median ms': +median(hot).toFixed(3), calls: hot.length },
      [`after ${busyMs} ms of work`]: { 'median ms': +median(idle).toFixed(3), calls: idle.length },
    });
    console.log(JSON.stringify({ bench: 'loopback-rtt', hotMs: median(hot), afterIdleMs: median(idle), busyMs }));
  } finally {
    child.kill();
  }
}
