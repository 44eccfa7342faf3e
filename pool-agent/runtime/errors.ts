/**
 * Errors of the model runtime. `SpanInputError` means the caller sent something the span cannot
 * run (wrong hidden size or dtype, out-of-vocabulary token, positions past the model's context):
 * a client error, never a fault of the host.
 *
 * @example
 * try { await session.forward(input); } catch (e) { if (e instanceof SpanInputError) reply400(e.message); }
 */
export class SpanInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SpanInputError';
  }
}

/** The session was disposed, or its span closed. */
export class SpanClosedError extends Error {
  constructor(message = 'span session is disposed') {
    super(message);
    this.name = 'SpanClosedError';
  }
}
