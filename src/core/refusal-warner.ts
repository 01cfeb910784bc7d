/**
 * Warnings about connections refused at a cap: the first goes out at once, then at most one per
 * `intervalMs`, each with the count since the last, so a client looping on connect cannot flood
 * the log. Returns the function to call on each refusal; `about` is passed to the warning.
 */
export function refusalWarner<T>(intervalMs: number, warn: (refused: number, about: T) => void): (about: T) => void {
  let refused = 0;
  let lastAt = -Infinity;
  return (about) => {
    refused++;
    const now = Date.now();
    if (now - lastAt < intervalMs) return;
    lastAt = now;
    warn(refused, about);
    refused = 0;
  };
}
