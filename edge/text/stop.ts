/**
 * Stop strings are matched on decoded text, across token boundaries: text that could still
 * become a stop string is held back until it cannot.
 *
 * @example
 * const s = new StopScanner(['\n\n']);
 * s.push('Hello\n');   // { text: 'Hello', stopped: false }
 * s.push('\nWorld');   // { text: '', stopped: true }
 */
export class StopScanner {
  private pending = '';
  private done = false;
  constructor(private readonly stops: readonly string[]) {}

  get stopped(): boolean {
    return this.done;
  }

  push(text: string): { text: string; stopped: boolean } {
    if (this.done) return { text: '', stopped: true };
    const buffer = this.pending + text;
    if (this.stops.length === 0) return { text: buffer, stopped: false };
    let cut = -1;
    for (const stop of this.stops) {
      const i = buffer.indexOf(stop);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.done = true;
      this.pending = '';
      return { text: buffer.slice(0, cut), stopped: true };
    }
    let hold = 0;
    for (const stop of this.stops) {
      for (let k = Math.min(stop.length - 1, buffer.length); k > hold; k--) {
        if (buffer.endsWith(stop.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    this.pending = buffer.slice(buffer.length - hold);
    return { text: buffer.slice(0, buffer.length - hold), stopped: false };
  }

  /** Text held back at the end of the stream (no stop string completed). */
  flush(): string {
    const rest = this.done ? '' : this.pending;
    this.pending = '';
    return rest;
  }
}
