/** The caller's token callback, wrapped: a token is reused until shortly
 * before it expires, asked for again after a refusal, and its expiry read
 * from the JWT (when it is one) so it can be refreshed in time. */

export type TokenSource = () => string | Promise<string>;

export interface HeldToken {
  token: string;
  /** `exp` of the JWT in Unix seconds, or null when the token is opaque. */
  expiresAt: number | null;
}

/** `exp` of a JWT, without verifying it (the server does). */
export function expiryOf(token: string): number | null {
  const payload = token.split(".")[1];
  if (payload === undefined) return null;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const claims: unknown = JSON.parse(decodeBase64(padded));
    if (typeof claims === "object" && claims !== null && "exp" in claims) {
      const exp = (claims as { exp: unknown }).exp;
      return typeof exp === "number" && Number.isFinite(exp) ? exp : null;
    }
  } catch {
    // Not a JWT the client can read: treat it as opaque.
  }
  return null;
}

function decodeBase64(text: string): string {
  const binary = atob(text);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

export class Tokens {
  private held: HeldToken | null = null;

  constructor(
    private readonly source: TokenSource,
    /** A held token this close to `exp` is not used for a new connection. */
    private readonly marginSecs: number,
    private readonly now: () => number = () => Date.now() / 1000,
  ) {}

  /** The held token if it is still good for a while, a new one otherwise. */
  async current(): Promise<HeldToken> {
    const held = this.held;
    if (held && (held.expiresAt === null || held.expiresAt - this.now() > this.marginSecs)) {
      return held;
    }
    return this.fresh();
  }

  /** Asks the callback for a token, whatever is held. */
  async fresh(): Promise<HeldToken> {
    const token = await this.source();
    if (typeof token !== "string" || token.length === 0) {
      throw new Error("the token callback returned no token");
    }
    this.held = { token, expiresAt: expiryOf(token) };
    return this.held;
  }

  /** The held token was refused: the next `current()` asks the callback. */
  forget(): void {
    this.held = null;
  }

  /** When to refresh the held token on a live connection: `marginSecs`
   * before it expires (or halfway through a shorter life), in ms from now;
   * null for an opaque token. */
  refreshInMs(): number | null {
    const expiresAt = this.held?.expiresAt;
    if (expiresAt === undefined || expiresAt === null) return null;
    const left = expiresAt - this.now();
    const lead = Math.min(this.marginSecs, left / 2);
    return Math.max(0, (left - lead) * 1000);
  }
}
