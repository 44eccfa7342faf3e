/**
 * JSON logs, one line per event. Never pass secrets or keys in `fields`: the logger drops fields
 * whose names look like secrets as a second line of defence.
 *
 * @example
 * const log = createLogger({ level: 'info' });
 * log.info('job done', { jobId, tokens: 12 });
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** Where lines go (default process.stderr, so stdout stays free for machine-read output). */
  write?: (line: string) => void;
  /** Fields on every line (e.g. agentId). */
  base?: Record<string, unknown>;
  clock?: () => number;
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET_FIELD = /key|token|secret|signature|password|authorization|pkcs8/i;

export function createLogger(options: LoggerOptions = {}): Logger {
  const min = ORDER[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const clock = options.clock ?? Date.now;
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < min) return;
    const line: Record<string, unknown> = { t: new Date(clock()).toISOString(), level, msg, ...options.base };
    for (const [k, v] of Object.entries(fields ?? {})) {
      // Counts such as "tokens" are fine; string values under secret-like names are not.
      if (SECRET_FIELD.test(k) && typeof v === 'string') continue;
      line[k] = v instanceof Error ? v.message : v;
    }
    try {
      write(JSON.stringify(line));
    } catch {
      // A log line must never take the agent down.
    }
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}

/** A logger that drops everything (tests). */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
