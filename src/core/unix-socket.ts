import { lstat, unlink } from 'node:fs/promises';
import { createConnection } from 'node:net';

/** How long to wait for an answer when probing whether a unix socket file is still in use. */
const PROBE_TIMEOUT_MS = 500;

/** Does something answer on this unix socket? Bounded by PROBE_TIMEOUT_MS. */
function socketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ path });
    const done = (v: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(true), PROBE_TIMEOUT_MS);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * Removes a socket file left by a process that is gone, before binding the same path. Refuses
 * anything that is not a socket, and a socket something still answers on (another running
 * authban), rather than taking it over. `what` names the socket in the errors.
 */
export async function clearStaleSocket(path: string, what: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw new Error(`${what}: ${path} exists and is not a socket; not replacing it`);
  if (await socketInUse(path)) throw new Error(`${what}: ${path} is in use by a running process`);
  await unlink(path);
}
