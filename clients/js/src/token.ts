/** The caller's token callback, wrapped: a token is reused until shortly
 * before it expires, asked for again after a refusal, and refreshed in
 * time. Its lifetime is read from the JWT (`exp - iat`) and counted on this
 * device's clock from when the token arrived, so a device whose clock is
 * off still refreshes in time. */

export type TokenSource = () => string | Promise<string>;

export interface HeldToken {
  token: string;
  /** `sub` of the JWT, or null when the token is opaque. */
  subject: string | null;
}

interface Claims {
  exp: number | null;
  iat: number | null;
  sub: string | null;
}

/** `exp` of a JWT, without verifying it (the server does). */
export function expiryOf(token: string): number | null {
  return claimsOf(token).exp;
}

function claimsOf(token: string): Claims {
  const none: Claims = { exp: null, iat: null, sub: null };
  const payload = token.split(".")[1];
  if (payload === undefined) return none;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const claims: unknown = JSON.parse(decodeBase64(padded));
    if (typeof claims !== "object" || claims === null) return none;
    const { exp, iat, sub } = claims as { exp?: unknown; iat?: unknown; sub?: unknown };
    const seconds = (value: unknown) => (typeof value === "number" && Number.isFinite(value) ? value : null);
    return { exp: seconds(exp), iat: seconds(iat), sub: typeof sub === "string" ? sub : null };
  } catch {
    // Not a JWT the client can read: treat it as opaque.
    return none;
  }
}

function decodeBase64(text: string): string {
  const binary = atob(text);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

interface Held extends HeldToken {
  /** When the token stops being good, on this device's clock (ms), or null when opaque. */
  localExpiry: number | null;
  /** Its whole lifetime (ms), or null when opaque. */
  lifetimeMs: number | null;
}

/** Longest timer a browser or Node runs as asked (2^31 - 1 ms, ~24.8 days). */
const MAX_TIMER_MS = 2_147_483_647;

export class Tokens {
  private held: Held | null = null;
  /** One callback call at a time: a refresh, a reconnect and a request that
   * need a token at once share it. */
  private asking: Promise<Held> | null = null;

  constructor(
    private readonly source: TokenSource,
    /** A held token this close to its expiry (s) is not used for a new connection. */
    private readonly reuseMarginSecs: number,
    /** Refresh this long (s) before expiry, or halfway through a shorter life. */
    private readonly refreshLeadSecs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The held token if it is still good for a while, a new one otherwise. */
  async current(): Promise<HeldToken> {
    const held = this.held;
    if (held && (held.localExpiry === null || held.localExpiry - this.now() > this.reuseMarginSecs * 1000)) {
      return held;
    }
    return this.fresh();
  }

  /** Asks the callback for a token, whatever is held. */
  fresh(): Promise<HeldToken> {
    this.asking ??= this.ask().finally(() => {
      this.asking = null;
    });
    return this.asking;
  }

  private async ask(): Promise<Held> {
    const token = await this.source();
    if (typeof token !== "string" || token.length === 0) {
      throw new Error("the token callback returned no token");
    }
    const receivedAt = this.now();
    const { exp, iat, sub } = claimsOf(token);
    let lifetimeMs: number | null = null;
    if (exp !== null) {
      // `exp - iat` on this clock from now; without `iat`, the device's
      // own view of `exp`.
      lifetimeMs = Math.max(0, iat !== null ? (exp - iat) * 1000 : exp * 1000 - receivedAt);
    }
    this.held = {
      token,
      subject: sub,
      lifetimeMs,
      localExpiry: lifetimeMs === null ? null : receivedAt + lifetimeMs,
    };
    return this.held;
  }

  /** The held token was refused: the next `current()` asks the callback. */
  forget(): void {
    this.held = null;
  }

  /** When to refresh the held token on a live connection, in ms from now;
   * null for an opaque token. */
  refreshInMs(): number | null {
    const held = this.held;
    if (!held || held.localExpiry === null || held.lifetimeMs === null) return null;
    const leadMs = Math.min(this.refreshLeadSecs * 1000, held.lifetimeMs / 2);
    return Math.min(MAX_TIMER_MS, Math.max(0, held.localExpiry - leadMs - this.now()));
  }
}
