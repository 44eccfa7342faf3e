/**
 * What this host offers: GPUs from `nvidia-smi` when present, else the CPU (model, cores) and
 * memory. The parsing is a plain function so it is tested without a GPU.
 *
 * @example
 * const hw = await detectHardware();
 * console.log(describeHardware(hw));
 */
import { execFile } from 'node:child_process';
import { cpus, platform, totalmem, arch } from 'node:os';
import type { Hardware } from '../protocol/owner-api.js';

export type ExecFn = (cmd: string, args: string[]) => Promise<string>;

const defaultExec: ExecFn = (cmd, args) =>
  new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 10_000, maxBuffer: 1024 * 1024 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
  });

/** Parses `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader` (memory in MiB). */
export function parseNvidiaSmi(text: string): Hardware['devices'] {
  const devices: Hardware['devices'] = [];
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (!trimmed) continue;
    const cut = trimmed.lastIndexOf(',');
    if (cut < 0) continue;
    const name = trimmed.slice(0, cut).trim().slice(0, 256);
    const mem = /([\d.]+)\s*(MiB|GiB|MB|GB)?/i.exec(trimmed.slice(cut + 1));
    if (!name || !mem) continue;
    const value = Number(mem[1]);
    const unit = (mem[2] ?? 'MiB').toLowerCase();
    const bytes = Math.round(value * (unit.startsWith('g') ? 1024 ** 3 : 1024 ** 2));
    devices.push({ kind: 'cuda', name, memoryBytes: bytes });
  }
  return devices;
}

export async function detectHardware(exec: ExecFn = defaultExec): Promise<Hardware> {
  const memoryBytes = totalmem();
  let gpus: Hardware['devices'] = [];
  try {
    gpus = parseNvidiaSmi(await exec('nvidia-smi', ['--query-gpu=name,memory.total', '--format=csv,noheader']));
  } catch {
    // No NVIDIA driver: CPU only.
  }
  const list = cpus();
  const cpu = { kind: 'cpu' as const, name: (list[0]?.model ?? 'unknown CPU').trim().slice(0, 256), memoryBytes, cores: list.length };
  return { devices: gpus.length ? [...gpus.slice(0, 63), cpu] : [cpu], memoryBytes, platform: `${platform()}-${arch()}`.slice(0, 64) };
}

const gib = (b: number) => `${(b / 1024 ** 3).toFixed(1)} GiB`;

export function describeHardware(hw: Hardware): string {
  const lines = hw.devices.map((d) => (d.kind === 'cuda' ? `GPU  ${d.name}, ${gib(d.memoryBytes)}` : `CPU  ${d.name}, ${d.cores ?? '?'} cores`));
  lines.push(`RAM  ${gib(hw.memoryBytes)}  (${hw.platform})`);
  const gpus = hw.devices.filter((d) => d.kind === 'cuda').length;
  if (gpus > 1) lines.push(`Serve one span over all ${gpus} GPUs: pool-agent serve --devices ${Array.from({ length: gpus }, (_, i) => `cuda:${i}`).join(',')}`);
  return lines.join('\n');
}
