/**
 * Prometheus text exposition for the agent: counters, gauges and histograms with labels.
 * Plain code, no runtime import.
 *
 * @example
 * const m = new AgentMetrics();
 * m.tokens.inc({ hop: '0' }, 3);
 * res.end(m.render());
 */
type Labels = Record<string, string>;

function labelKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  return keys.map((k) => `${k}="${String(labels[k]).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`).join(',');
}

/** Bounded label sets: a metric refuses new label combinations past this many (junk codes from the network). */
const MAX_SERIES = 200;

export class Counter {
  private readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels: Labels = {}, by = 1): void {
    const k = labelKey(labels);
    if (!this.values.has(k) && this.values.size >= MAX_SERIES) return;
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    if (this.values.size === 0) lines.push(`${this.name} 0`);
    for (const [k, v] of this.values) lines.push(`${this.name}${k ? `{${k}}` : ''} ${v}`);
    return lines.join('\n');
  }
}

export class Gauge {
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly read: () => number,
  ) {}
  render(): string {
    return [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`, `${this.name} ${this.read()}`].join('\n');
  }
}

export class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {
    this.counts = buckets.map(() => 0);
  }
  observe(value: number): void {
    this.sum += value;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) this.counts[i]!++;
  }
  get observations(): number {
    return this.count;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket{le="${b}"} ${this.counts[i]}`));
    lines.push(`${this.name}_bucket{le="+Inf"} ${this.count}`, `${this.name}_sum ${this.sum}`, `${this.name}_count ${this.count}`);
    return lines.join('\n');
  }
}

export interface MetricSources {
  sessions: () => number;
  reservedKvBytes: () => number;
  kvBytes: () => number;
}

export class AgentMetrics {
  readonly tokens = new Counter('layernet_agent_tokens_generated_total', 'Tokens this agent produced or forwarded, by role.');
  readonly jobs = new Counter('layernet_agent_jobs_total', 'Jobs finished by this agent as head hop, by finish reason.');
  readonly errors = new Counter('layernet_agent_errors_total', 'Errors returned, by code.');
  readonly forwards = new Counter('layernet_agent_forward_frames_total', 'Forward frames served as a downstream hop.');
  readonly links = new Counter('layernet_agent_links_total', 'Links this agent took to a next hop for a job: kept="true" when an earlier job left it open, "false" when opened anew.');
  readonly jobDuration = new Histogram('layernet_agent_job_duration_seconds', 'Wall time of jobs run as head hop.', [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]);
  readonly stepDuration = new Histogram('layernet_agent_step_duration_seconds', 'Wall time of one generation step across the route.', [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]);
  /** Compared with step time, shows what a route spends outside the model (hops, transport). */
  readonly spanDuration = new Histogram('layernet_agent_span_duration_seconds', "Time inside this agent's layer span (onnxruntime) per step, on every hop.", [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]);
  private readonly gauges: Gauge[];

  constructor(sources: MetricSources = { sessions: () => 0, reservedKvBytes: () => 0, kvBytes: () => 0 }) {
    this.gauges = [
      new Gauge('layernet_agent_sessions', 'Open KV sessions.', sources.sessions),
      new Gauge('layernet_agent_kv_reserved_bytes', 'KV-cache bytes reserved by open sessions.', sources.reservedKvBytes),
      new Gauge('layernet_agent_kv_bytes', 'KV-cache bytes held by open sessions now.', sources.kvBytes),
    ];
  }

  render(): string {
    return [...this.gauges, this.tokens, this.jobs, this.errors, this.forwards, this.links, this.jobDuration, this.stepDuration, this.spanDuration].map((m) => m.render()).join('\n') + '\n';
  }
}
