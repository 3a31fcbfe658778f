/**
 * TenantStore on Redis: a hash of tenant JSON by id and a hash of phone number -> tenant id, written
 * together by one Lua script (numbers stay unique) that also publishes a change notice to every pod.
 */
import type { Redis } from 'ioredis';
import { TenantSchema, type TenantConfig } from '../tenants/tenant.js';
import { storeUnavailable } from './redis-connection.js';
import type { TenantStore, TenantWrite, TenantWriteMode } from '../tenants/tenant-store.js';

const TENANTS = 'tenants';
const NUMBERS = 'tenant-numbers';
const INITIALISED = 'tenants-initialised';

// KEYS: tenants hash, numbers hash. ARGV: id, json, mode, channel, numbers...
// HGET answers false (not nil) in Lua for a missing field.
const PUT = `
local old = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[3] == 'create' and old then return {'exists'} end
if ARGV[3] == 'replace' and not old then return {'not_found'} end
for i = 5, #ARGV do
  local owner = redis.call('HGET', KEYS[2], ARGV[i])
  if owner and owner ~= ARGV[1] then return {'number_taken', ARGV[i], owner} end
end
if old then
  local prev = cjson.decode(old)
  for _, n in ipairs(prev['phoneNumbers'] or {}) do
    if redis.call('HGET', KEYS[2], n) == ARGV[1] then redis.call('HDEL', KEYS[2], n) end
  end
end
for i = 5, #ARGV do redis.call('HSET', KEYS[2], ARGV[i], ARGV[1]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[1])
if old then return {'updated'} end
return {'created'}
`;

// KEYS: tenants hash, numbers hash. ARGV: id, channel.
const DELETE = `
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
local prev = cjson.decode(old)
for _, n in ipairs(prev['phoneNumbers'] or {}) do
  if redis.call('HGET', KEYS[2], n) == ARGV[1] then redis.call('HDEL', KEYS[2], n) end
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1
`;

export interface RedisTenantStoreOptions {
  /**
   * Pub/sub channel for change notices. Channels are not keys, so ioredis's keyPrefix does not
   * apply: give deployments sharing one Redis distinct channels (default `sb:tenants-changed`).
   */
  channel?: string;
  /** A stored record no longer validates (schema tightened, hand edit): it is skipped, and reported here. */
  onInvalid?: (id: string, problem: string) => void;
}

/** A Redis reply, or the failure as the typed `store_unavailable` every store reports. */
function answer<T>(p: Promise<T>): Promise<T> {
  return p.catch((err: unknown) => {
    throw storeUnavailable(err);
  });
}

interface TenantScripts {
  sbTenantPut(...args: (string | number)[]): Promise<string[]>;
  sbTenantDelete(...args: (string | number)[]): Promise<number>;
}

export class RedisTenantStore implements TenantStore {
  private readonly channel: string;
  private subscriber: Redis | undefined;
  private readonly listeners = new Set<() => void>();

  /** `redis` is shared and not closed here; the subscriber connection this store opens is. */
  private readonly scripts: TenantScripts;

  constructor(
    private readonly redis: Redis,
    private readonly o: RedisTenantStoreOptions = {},
  ) {
    this.channel = o.channel ?? 'sb:tenants-changed';
    // Defined once, sent as EVALSHA (the script text only when Redis lacks it, e.g. after a restart).
    redis.defineCommand('sbTenantPut', { lua: PUT, numberOfKeys: 2 });
    redis.defineCommand('sbTenantDelete', { lua: DELETE, numberOfKeys: 2 });
    this.scripts = redis as unknown as TenantScripts;
  }

  async list(): Promise<TenantConfig[]> {
    const all = await answer(this.redis.hgetall(TENANTS));
    const out: TenantConfig[] = [];
    for (const [id, json] of Object.entries(all)) {
      const t = this.decode(id, json);
      if (t) out.push(t);
    }
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  async initialised(): Promise<boolean> {
    return (await answer(this.redis.exists(INITIALISED))) === 1;
  }

  async markInitialised(): Promise<void> {
    await answer(this.redis.set(INITIALISED, '1'));
  }

  async get(id: string): Promise<TenantConfig | undefined> {
    const json = await answer(this.redis.hget(TENANTS, id));
    return json === null ? undefined : this.decode(id, json);
  }

  async put(tenant: TenantConfig, mode: TenantWriteMode): Promise<TenantWrite> {
    const r = await answer(
      this.scripts.sbTenantPut(TENANTS, NUMBERS, tenant.id, JSON.stringify(tenant), mode, this.channel, ...tenant.phoneNumbers),
    );
    const outcome = r[0] ?? 'number_taken';
    switch (outcome) {
      case 'created':
        return { ok: true, created: true };
      case 'updated':
        return { ok: true, created: false };
      case 'exists':
        return { ok: false, reason: 'exists' };
      case 'not_found':
        return { ok: false, reason: 'not_found' };
      default:
        return { ok: false, reason: 'number_taken', number: r[1] ?? '', owner: r[2] ?? '' };
    }
  }

  async delete(id: string): Promise<boolean> {
    return (await answer(this.scripts.sbTenantDelete(TENANTS, NUMBERS, id, this.channel))) === 1;
  }

  async subscribe(onChange: () => void): Promise<() => void> {
    this.listeners.add(onChange);
    if (!this.subscriber) {
      const sub = this.redis.duplicate();
      this.subscriber = sub;
      // The main connection logs outages; without a listener ioredis prints every reconnect failure.
      sub.on('error', () => {});
      sub.on('message', (channel: string) => {
        if (channel === this.channel) this.notify();
      });
      // Notices published while the subscriber was disconnected are lost: treat a reconnect as a change.
      let first = true;
      sub.on('ready', () => {
        if (!first) this.notify();
        first = false;
      });
      await sub.subscribe(this.channel);
    }
    return () => {
      this.listeners.delete(onChange);
    };
  }

  async close(): Promise<void> {
    this.listeners.clear();
    const sub = this.subscriber;
    this.subscriber = undefined;
    if (sub) {
      try {
        await sub.quit();
      } catch {
        sub.disconnect();
      }
    }
  }

  private notify(): void {
    for (const fn of this.listeners) fn();
  }

  private decode(id: string, json: string): TenantConfig | undefined {
    let raw: unknown;
    try {
      raw = JSON.parse(json);
    } catch {
      this.o.onInvalid?.(id, 'not JSON');
      return undefined;
    }
    const r = TenantSchema.safeParse(raw);
    if (r.success) return r.data;
    this.o.onInvalid?.(id, r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
    return undefined;
  }
}
