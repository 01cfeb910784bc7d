/**
 * Polls cond until it holds; throws after timeoutMs. For tests that wait on timers (flush,
 * back-off, retries): a fixed sleep races the timers on a loaded machine, a bounded poll does not.
 */
export async function waitFor(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
