/**
 * sendmail queue ids (`{i}`, e.g. `6APHZDNQ014179`) are 8 characters of date and sequence
 * followed by the SMTP child's pid, zero-padded. Anything else yields no pid rather than a
 * guess, so a wrong pid can never tie a log line to the wrong session.
 */
export function pidFromQueueId(queueId: string): number | undefined {
  const digits = queueId.slice(8);
  if (!/^\d{1,10}$/.test(digits)) return undefined;
  const pid = Number(digits);
  return pid > 0 && pid <= 0x7fffffff ? pid : undefined;
}
