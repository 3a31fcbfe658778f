/**
 * The Redis CallStore's key layout and its Lua scripts: every multi-key write that must be atomic
 * (call writes that copy the call's TTL to its children, the end of a call, claims, heartbeats and
 * the reaping of a dead pod) runs as one script. Key layout is documented in docs/tools.md.
 */
import type { Redis } from 'ioredis';

/*
 * Keys (all under the connection's keyPrefix, `sb:` by default):
 *   call:{CA…}              hash: the call's fields (braces: one Redis Cluster slot per call); `pods`
 *                           and `migrations` are JSON arrays, `migratingAt`/`migratingReason` set while moving
 *   call:{CA…}:transcript   list of JSON TranscriptEntry
 *   call:{CA…}:tools        hash callId -> JSON ToolCallRecord (HSETNX: recorded once)
 *   call:{CA…}:results      hash callId -> JSON StoredToolResult (HSETNX: first result wins)
 *   active                  zset callSid -> last heartbeat of its pod (ms)
 *   pods                    zset pod -> last heartbeat (ms)
 *   pod:<pod>:calls         set of the pod's live callSids
 *   once:<id>               one-time ids (SET NX EX)
 *   t:<tenant>:claim:<key>  exclusive holds (slots, technicians), value = owner
 *   calls                   zset callSid -> startedAt (ms): every call within retention, all tenants
 *   t:<tenant>:calls        zset callSid -> startedAt (ms): the tenant's calls within its retention
 * Child keys copy the call hash's TTL: live TTL from the start, the tenant's retention after the end.
 */

export const callKey = (sid: string): string => `call:{${sid}}`;
export const CHILDREN = [':transcript', ':tools', ':results'] as const;

/** The global start-time index (all tenants). */
export const CALLS_INDEX = 'calls';
/** One tenant's start-time index. */
export const tenantCallsIndex = (tenantId: string): string => `t:${tenantId}:calls`;

export function claimKey(tenantId: string, key: string): string {
  return `t:${tenantId}:claim:${key}`;
}

/** Runs only if the call hash exists (-1 otherwise: data lost, or an unknown call). Children copy its TTL. */
const CALL_WRITE = `
local call = KEYS[1]
if redis.call('EXISTS', call) == 0 then return -1 end
local op = ARGV[1]
local r = 1
if op == 'phase' then
  if redis.call('HGET', call, 'phase') == 'ended' then return 0 end
  redis.call('HSET', call, 'phase', ARGV[3], 'updatedAt', ARGV[2])
  if ARGV[3] ~= 'migrating' then redis.call('HDEL', call, 'migratingAt', 'migratingReason') end
elseif op == 'migrate' then
  if redis.call('HGET', call, 'phase') == 'ended' then return 0 end
  redis.call('HSET', call, 'phase', 'migrating', 'migratingAt', ARGV[3], 'migratingReason', ARGV[4], 'updatedAt', ARGV[2])
elseif op == 'field' then
  redis.call('HSET', call, ARGV[3], ARGV[4], 'updatedAt', ARGV[2])
elseif op == 'push' then
  redis.call('RPUSH', KEYS[2], ARGV[3])
  redis.call('HSET', call, 'updatedAt', ARGV[2])
elseif op == 'hsetnx' then
  r = redis.call('HSETNX', KEYS[2], ARGV[3], ARGV[4])
  redis.call('HSET', call, 'updatedAt', ARGV[2])
end
if KEYS[2] then
  local ttl = redis.call('PTTL', call)
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
return r`;

/** First result wins; returns the stored JSON. TTL follows the call, or `ARGV[3]` s for unknown calls. */
const PUT_RESULT = `
redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl)
elseif redis.call('PTTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
return redis.call('HGET', KEYS[2], ARGV[1])`;

/**
 * KEYS: call hash, active, children. ARGV: outcome, now, retention s, prefix, callSid, byPod ('' = any).
 * 0: not ended, because byPod no longer holds the call (released, or adopted by another pod).
 */
const END_CALL = `
local call = KEYS[1]
if redis.call('EXISTS', call) == 0 then return -1 end
local phase = redis.call('HGET', call, 'phase')
if ARGV[6] ~= '' and phase ~= 'ended' and (phase == 'migrating' or redis.call('HGET', call, 'pod') ~= ARGV[6]) then return 0 end
if phase ~= 'ended' then
  redis.call('HSET', call, 'phase', 'ended', 'outcome', ARGV[1], 'endedAt', ARGV[2], 'updatedAt', ARGV[2])
end
local pod = redis.call('HGET', call, 'pod')
if pod then redis.call('SREM', ARGV[4] .. 'pod:' .. pod .. ':calls', ARGV[5]) end
redis.call('ZREM', KEYS[2], ARGV[5])
for i = 3, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
redis.call('EXPIRE', call, ARGV[3])
return 1`;

/**
 * KEYS: call hash, the pod's call set. ARGV: pod, callSid, stop time ('' = keep). The record stays live
 * for the next pod; while it still waits for one, its gap starts at this pod's stop.
 */
const RELEASE_CALL = `
redis.call('SREM', KEYS[2], ARGV[2])
if ARGV[3] ~= '' and redis.call('HGET', KEYS[1], 'pod') == ARGV[1] and redis.call('HGET', KEYS[1], 'phase') == 'migrating' then
  redis.call('HSET', KEYS[1], 'migratingAt', ARGV[3])
end
return 1`;

const CLAIM = `
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0`;

/** KEYS: pods, active. ARGV: pod, now, prefix. */
const HEARTBEAT = `
redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
local calls = redis.call('SMEMBERS', ARGV[3] .. 'pod:' .. ARGV[1] .. ':calls')
for _, sid in ipairs(calls) do redis.call('ZADD', KEYS[2], 'XX', ARGV[2], sid) end
return #calls`;

/*
 * One dead pod, atomically: whoever removes the pod from the zset reaps its calls; a second
 * survivor running the same script finds the pod gone (or fresh again) and does nothing.
 * KEYS: pods, active. ARGV: pod, cutoff, now, prefix, default retention s.
 */
const REAP_POD = `
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) >= tonumber(ARGV[2]) then return {} end
redis.call('ZREM', KEYS[1], ARGV[1])
local set = ARGV[4] .. 'pod:' .. ARGV[1] .. ':calls'
local out = {'reaped'}
for _, sid in ipairs(redis.call('SMEMBERS', set)) do
  local call = ARGV[4] .. 'call:{' .. sid .. '}'
  redis.call('ZREM', KEYS[2], sid)
  local phase = redis.call('HGET', call, 'phase')
  if phase == 'migrating' then
    -- Released before the pod died: its adopter's (the active index keeps it meanwhile).
    redis.call('ZADD', KEYS[2], ARGV[3], sid)
  elseif phase and phase ~= 'ended' then
    redis.call('HSET', call, 'phase', 'ended', 'outcome', 'abandoned', 'endedAt', ARGV[3], 'updatedAt', ARGV[3])
    local ret = tonumber(redis.call('HGET', call, 'retention')) or tonumber(ARGV[5])
    redis.call('EXPIRE', call, ret)
    redis.call('EXPIRE', call .. ':transcript', ret)
    redis.call('EXPIRE', call .. ':tools', ret)
    redis.call('EXPIRE', call .. ':results', ret)
    out[#out + 1] = sid
  end
end
redis.call('DEL', set)
return out`;

/*
 * The global start-time index holds calls of tenants with different retentions, so it cannot be cut
 * by score: each new call drops up to ARGV[2] of its oldest entries whose call has expired.
 * KEYS: calls. ARGV: prefix, how many to look at.
 */
const PRUNE_INDEX = `
local n = 0
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)) do
  if redis.call('EXISTS', ARGV[1] .. 'call:{' .. sid .. '}') == 0 then
    redis.call('ZREM', KEYS[1], sid)
    n = n + 1
  end
end
return n`;

/*
 * One adopter wins: the call must be released (phase migrating). The migration's JSON is built here
 * from the stored strings (numbers kept exactly as written).
 * KEYS: call hash, active. ARGV: pod, streamSid, now, prefix, callSid, new leg's traceparent ('' = none).
 * Returns {'ok', migration JSON, old leg's traceparent} or {'unknown' | 'ended' | 'live'}.
 */
const ADOPT_CALL = `
local call = KEYS[1]
if redis.call('EXISTS', call) == 0 then return {'unknown'} end
local phase = redis.call('HGET', call, 'phase')
if phase == 'ended' then return {'ended'} end
if phase ~= 'migrating' then return {'live'} end
local from = redis.call('HGET', call, 'pod') or ''
local at = redis.call('HGET', call, 'migratingAt') or ARGV[3]
local reason = redis.call('HGET', call, 'migratingReason') or 'crash'
local m = '{"at":' .. at .. ',"from":' .. cjson.encode(from) .. ',"to":' .. cjson.encode(ARGV[1]) .. ',"reason":' .. cjson.encode(reason) .. '}'
local pods = redis.call('HGET', call, 'pods') or ('[' .. cjson.encode(from) .. ']')
local migrations = redis.call('HGET', call, 'migrations') or '[]'
local function append(list, item)
  if list == '[]' then return '[' .. item .. ']' end
  return string.sub(list, 1, -2) .. ',' .. item .. ']'
end
redis.call('HSET', call, 'pod', ARGV[1], 'phase', 'connecting', 'streamSid', ARGV[2], 'updatedAt', ARGV[3],
  'pods', append(pods, cjson.encode(ARGV[1])), 'migrations', append(migrations, m))
redis.call('HDEL', call, 'migratingAt', 'migratingReason')
local oldTrace = redis.call('HGET', call, 'traceparent') or ''
if ARGV[6] ~= '' then redis.call('HSET', call, 'traceparent', ARGV[6]) end
redis.call('SREM', ARGV[4] .. 'pod:' .. from .. ':calls', ARGV[5])
redis.call('SADD', ARGV[4] .. 'pod:' .. ARGV[1] .. ':calls', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[5])
return {'ok', m, oldTrace}`;

export interface Scripts {
  sbAdoptCall(...args: (string | number)[]): Promise<string[]>;
  sbCallWrite(...args: (string | number)[]): Promise<number>;
  sbPutResult(...args: (string | number)[]): Promise<string | null>;
  sbEndCall(...args: (string | number)[]): Promise<number>;
  sbClaim(...args: (string | number)[]): Promise<string>;
  sbRelease(...args: (string | number)[]): Promise<number>;
  sbReleaseCall(...args: (string | number)[]): Promise<number>;
  sbHeartbeat(...args: (string | number)[]): Promise<number>;
  sbReapPod(...args: (string | number)[]): Promise<string[]>;
  sbPruneIndex(...args: (string | number)[]): Promise<number>;
}

/** Register the scripts on a connection (EVALSHA with a fallback to EVAL, by ioredis). */
export function defineScripts(redis: Redis): Scripts {
  redis.defineCommand('sbCallWrite', { lua: CALL_WRITE, numberOfKeys: 2 });
  redis.defineCommand('sbPutResult', { lua: PUT_RESULT, numberOfKeys: 2 });
  redis.defineCommand('sbEndCall', { lua: END_CALL, numberOfKeys: 5 });
  redis.defineCommand('sbClaim', { lua: CLAIM, numberOfKeys: 1 });
  redis.defineCommand('sbRelease', { lua: RELEASE, numberOfKeys: 1 });
  redis.defineCommand('sbReleaseCall', { lua: RELEASE_CALL, numberOfKeys: 2 });
  redis.defineCommand('sbAdoptCall', { lua: ADOPT_CALL, numberOfKeys: 2 });
  redis.defineCommand('sbHeartbeat', { lua: HEARTBEAT, numberOfKeys: 2 });
  redis.defineCommand('sbReapPod', { lua: REAP_POD, numberOfKeys: 2 });
  redis.defineCommand('sbPruneIndex', { lua: PRUNE_INDEX, numberOfKeys: 1 });
  return redis as unknown as Scripts;
}
