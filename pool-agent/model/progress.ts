/**
 * A terminal progress bar for long model builds: redraws one line on a TTY, prints a line per
 * change of label elsewhere (logs, CI).
 *
 * @example
 * const bar = createProgressBar('building small fp32');
 * await buildModel({ preset: 'small', outDir, onProgress: bar.update });
 * bar.finish();
 */

export interface ProgressBar {
  /** Matches BuildModelOptions.onProgress. */
  update: (done: number, total: number, label: string) => void;
  /** Ends the line. */
  finish: () => void;
}

export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** Renders `[#####-----]  3/10 label` for a given width (pure, for tests). */
export function renderProgress(done: number, total: number, label: string, width = 30): string {
  const ratio = total > 0 ? Math.min(1, Math.max(0, done / total)) : 1;
  const filled = Math.round(ratio * width);
  const pct = Math.floor(ratio * 100)
    .toString()
    .padStart(3, ' ');
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${pct}% ${done}/${total} ${label}`;
}

export function createProgressBar(title: string, stream: ProgressStream = process.stderr): ProgressBar {
  const tty = stream.isTTY === true;
  let lastLabel = '';
  let drawn = false;
  const started = Date.now();
  return {
    update(done, total, label) {
      const line = `${title} ${renderProgress(done, total, label)}`;
      if (tty) {
        const cols = stream.columns ?? 100;
        stream.write(`\r${line.slice(0, cols - 1).padEnd(cols - 1, ' ')}`);
        drawn = true;
      } else if (label !== lastLabel) {
        stream.write(`${line}\n`);
      }
      lastLabel = label;
    },
    finish() {
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      if (tty && drawn) stream.write(`\n`);
      stream.write(`${title} done in ${secs}s\n`);
    },
  };
}
