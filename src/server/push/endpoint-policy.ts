// Which Web Push endpoints the relay will POST to: https on port 443 to a host on PUSH_ALLOWED_HOSTS (by default
// the browsers' push services), never an IP literal in any notation; the loopback interface only in development
// (PUSH_ALLOW_LOOPBACK). Without it a device could aim the relay's requests at its own network or cloud metadata.

/** The push services of Chrome and Android (FCM), Firefox (autopush), Safari (APNs web push) and Edge (WNS). */
export const DEFAULT_PUSH_HOSTS =
  "fcm.googleapis.com,updates.push.services.mozilla.com,web.push.apple.com,*.notify.windows.com";

/** A host name, or with `suffix` any host below it (written `*.notify.windows.com`). */
export interface HostPattern {
  host: string;
  suffix: boolean;
}

/** PUSH_ALLOWED_HOSTS parsed; as text it is the canonical comma-separated list (what docs/configuration.md shows). */
export class PushHosts {
  constructor(readonly patterns: readonly HostPattern[]) {}

  allows(hostname: string): boolean {
    return this.patterns.some((p) => (p.suffix ? hostname.endsWith(`.${p.host}`) : hostname === p.host));
  }

  toString(): string {
    return this.patterns.map((p) => `${p.suffix ? "*." : ""}${p.host}`).join(",");
  }
}

/** What the policy reads from the configuration (Config has both). */
export interface PushPolicy {
  PUSH_ALLOWED_HOSTS: PushHosts;
  PUSH_ALLOW_LOOPBACK: boolean;
}

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/**
 * Parses PUSH_ALLOWED_HOSTS: comma-separated DNS names of at least two labels, each optionally `*.`-prefixed;
 * a string naming the problem otherwise. IP addresses are refused: the top label of a name is never all digits.
 */
export function parseHostPatterns(text: string): PushHosts | string {
  const out: HostPattern[] = [];
  for (const raw of text.split(",")) {
    const entry = raw.trim().toLowerCase();
    const suffix = entry.startsWith("*.");
    const host = suffix ? entry.slice(2) : entry;
    const labels = host.split(".");
    if (labels.length < 2 || !labels.every((l) => LABEL.test(l)) || /^\d+$/.test(labels.at(-1)!))
      return `entry ${JSON.stringify(raw.trim())} is not a host name (name.example or *.name.example; no IP addresses)`;
    out.push({ host, suffix });
  }
  return new PushHosts(out);
}

const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);

/** An IP literal as the URL parser leaves it: IPv4 in any notation becomes a dotted quad, IPv6 is bracketed. */
const isIpLiteral = (hostname: string) => hostname.startsWith("[") || /^\d+\.\d+\.\d+\.\d+$/.test(hostname);

/** Why the relay will not call `endpoint`, or null when it will. */
export function pushEndpointProblem(endpoint: string, policy: PushPolicy): string | null {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    return "is not a URL";
  }
  if (u.username || u.password) return "must not carry credentials";
  // The WHATWG parser has already turned 127.1, 0x7f000001, 2130706433 and 0177.0.0.1 into 127.0.0.1.
  if (policy.PUSH_ALLOW_LOOPBACK && LOOPBACK_HOSTS.has(u.hostname) && /^https?:$/.test(u.protocol)) return null;
  if (u.protocol !== "https:") return "must be an https URL";
  if (u.port !== "") return "must use the https port, 443";
  if (isIpLiteral(u.hostname)) return "must name its push service by host name, not by IP address";
  if (!policy.PUSH_ALLOWED_HOSTS.allows(u.hostname))
    return `must be at a push service this relay calls (PUSH_ALLOWED_HOSTS), not ${u.hostname}`;
  return null;
}
