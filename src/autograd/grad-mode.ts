// Whether ops record on the tape. Off inside noGrad(): evaluation, the optimizer step, running-stat updates.
let enabled = true;

export function isGradEnabled(): boolean {
  return enabled;
}

/** Runs fn with recording off (synchronous fn only: a global flag cannot follow an await). */
export function noGrad<T>(fn: () => T): T {
  const previous = enabled;
  enabled = false;
  try {
    return fn();
  } finally {
    enabled = previous;
  }
}

export function setGradEnabled(on: boolean): boolean {
  const previous = enabled;
  enabled = on;
  return previous;
}
