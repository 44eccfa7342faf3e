import { describe, expect, it } from 'vitest';
import { availableMemoryBytes, LOAD_PEAK_FACTOR, LOAD_PEAK_FACTORS, loadMemoryWarning } from '../../pool-agent/runtime/load-memory.js';

const GiB = 2 ** 30;

describe('memory to load a span', () => {
  it('warns only when the span would likely need more memory than is available, with both figures', () => {
    expect(loadMemoryWarning(1 * GiB, 4 * GiB)).toBeNull();
    expect(loadMemoryWarning(1 * GiB, LOAD_PEAK_FACTOR * GiB)).toBeNull();
    const w = loadMemoryWarning(4.2 * GiB, 8 * GiB);
    expect(w).toMatch(/4\.2 GiB of model files/);
    expect(w).toMatch(/about 11\.8 GiB of memory at its peak, and 8\.0 GiB is available/);
    expect(w).toMatch(/--layers/);
  });

  it('counts the weight format: quantized files need a larger multiple of their bytes', () => {
    // 1 GiB of int4 files with 3 GiB available: fine at the float factor, not at int4's.
    expect(loadMemoryWarning(1 * GiB, 3 * GiB)).toBeNull();
    expect(loadMemoryWarning(1 * GiB, 3 * GiB, 'float16')).toBeNull();
    expect(loadMemoryWarning(1 * GiB, 3 * GiB, 'int8')).toMatch(/1\.0 GiB of int8 model files\) may need about 3\.3 GiB/);
    expect(loadMemoryWarning(1 * GiB, 3 * GiB, 'int4')).toMatch(/about 3\.7 GiB/);
    expect(LOAD_PEAK_FACTORS.int4).toBeGreaterThan(LOAD_PEAK_FACTORS.int8);
    expect(LOAD_PEAK_FACTORS.int8).toBeGreaterThan(LOAD_PEAK_FACTORS.float32);
  });

  it("reads Linux's MemAvailable (not MemFree, which leaves out the page cache it could drop)", () => {
    const meminfo = 'MemTotal:       24000000 kB\nMemFree:          500000 kB\nMemAvailable:   20000000 kB\nBuffers:            1000 kB\n';
    expect(availableMemoryBytes(meminfo)).toBe(20000000 * 1024);
    // Without the field (not Linux, an old kernel): the OS's free memory, some positive figure.
    expect(availableMemoryBytes('MemTotal: 1 kB\n')).toBeGreaterThan(0);
  });
});
