import { describe, expect, it } from 'vitest';
import { azureRealtimeUrl, loadConfig, mediaStreamUrl } from '../../src/config.js';
import { SwitchboardError } from '../../src/errors.js';

function configError(env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(SwitchboardError);
    expect((err as SwitchboardError).code).toBe('config_invalid');
    return (err as Error).message.split('\n');
  }
  throw new Error('expected a config error');
}

describe('loadConfig', () => {
  it('gives the embedded defaults of npm start', () => {
    const c = loadConfig({});
    expect(c.port).toBe(8080);
    expect(c.host).toBe('0.0.0.0');
    expect(c.publicUrl).toBe('http://localhost:8080');
    expect(c.redisUrl).toBeUndefined();
    expect(c.model).toEqual({ provider: 'sim', mode: 'realistic' });
    expect(c.validateSignatures).toBe(true);
    expect(c.drainTimeoutSeconds).toBe(3600);
    expect(c.streamTokenSecretEphemeral).toBe(true);
    expect(c.streamTokenSecret.length).toBeGreaterThanOrEqual(32);
    expect(Object.isFrozen(c)).toBe(true);
    expect(mediaStreamUrl(c)).toBe('ws://localhost:8080/twilio/media');
  });

  it('picks openai when a key is set, GA URL and model', () => {
    const c = loadConfig({ OPENAI_API_KEY: 'sk-test' });
    expect(c.model).toEqual({ provider: 'openai', url: 'wss://api.openai.com/v1/realtime', apiKey: 'sk-test', model: 'gpt-realtime' });
  });

  it('builds Azure GA and preview URLs', () => {
    const ga = loadConfig({ MODEL_PROVIDER: 'azure', AZURE_OPENAI_ENDPOINT: 'https://res.openai.azure.com', AZURE_OPENAI_API_KEY: 'k', AZURE_OPENAI_DEPLOYMENT: 'rt' });
    expect(ga.model).toMatchObject({ provider: 'azure', url: 'wss://res.openai.azure.com/openai/v1/realtime?model=rt', shape: 'ga' });
    expect(azureRealtimeUrl('https://res.openai.azure.com/', 'rt', '2025-04-01-preview')).toBe(
      'wss://res.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=rt',
    );
  });

  it('REALTIME_TRANSCRIPTION_MODEL: unset, a (deployment) name, or none', () => {
    expect(loadConfig({}).transcriptionModel).toBeUndefined();
    expect(loadConfig({ REALTIME_TRANSCRIPTION_MODEL: ' my-transcribe ' }).transcriptionModel).toBe('my-transcribe');
    expect(loadConfig({ REALTIME_TRANSCRIPTION_MODEL: 'none' }).transcriptionModel).toBeNull();
  });

  it('reads "false" as false, not true', () => {
    expect(loadConfig({ TWILIO_VALIDATE_SIGNATURES: 'false' }).validateSignatures).toBe(false);
    expect(loadConfig({ TWILIO_VALIDATE_SIGNATURES: '0' }).validateSignatures).toBe(false);
  });

  it('names every bad variable, one line each', () => {
    const lines = configError({ PORT: 'eighty', REDIS_URL: 'http://nope', LOG_LEVEL: 'loud', TWILIO_VALIDATE_SIGNATURES: 'yes' });
    expect(lines).toHaveLength(4);
    expect(lines.some((l) => l.startsWith('PORT: '))).toBe(true);
    expect(lines.some((l) => l.startsWith('REDIS_URL: must be a URL starting with redis:// or rediss://'))).toBe(true);
    expect(lines.some((l) => l.startsWith('LOG_LEVEL: '))).toBe(true);
    expect(lines.some((l) => l.startsWith('TWILIO_VALIDATE_SIGNATURES: must be true or false'))).toBe(true);
  });

  it('requires provider credentials and refuses plain ws to remote hosts', () => {
    expect(configError({ MODEL_PROVIDER: 'openai' })).toEqual(['OPENAI_API_KEY: required when MODEL_PROVIDER is openai']);
    expect(configError({ MODEL_PROVIDER: 'azure' })).toHaveLength(3);
    expect(configError({ OPENAI_API_KEY: 'k', OPENAI_REALTIME_URL: 'ws://example.com/v1/realtime' })[0]).toMatch(/loopback/);
    expect(loadConfig({ OPENAI_API_KEY: 'k', OPENAI_REALTIME_URL: 'ws://127.0.0.1:9/v1/realtime' }).model.provider).toBe('openai');
  });

  it('takes TENANTS_FILE_MODE seed (default) or reconcile, and reconcile only with a file', () => {
    expect(loadConfig({}).tenantsFileMode).toBe('seed');
    expect(loadConfig({ TENANTS_FILE: 't.yaml', TENANTS_FILE_MODE: 'reconcile' }).tenantsFileMode).toBe('reconcile');
    expect(configError({ TENANTS_FILE_MODE: 'merge' })).toEqual(['TENANTS_FILE_MODE: must be seed or reconcile']);
    expect(configError({ TENANTS_FILE_MODE: 'reconcile' })).toEqual(['TENANTS_FILE_MODE: reconcile needs TENANTS_FILE (the file it makes the truth)']);
  });

  it('plain ws/http upstreams only for loopback IP literals, not names that start with 127.', () => {
    for (const url of ['ws://127.attacker.example/v1/realtime', 'ws://127.0.0.1.nip.io/v1', 'ws://localhost.attacker.example/v1', 'ws://[::2]/v1']) {
      expect(configError({ OPENAI_API_KEY: 'k', OPENAI_REALTIME_URL: url })[0], url).toMatch(/OPENAI_REALTIME_URL: plain ws:\/\/ is allowed only for loopback/);
    }
    expect(configError({ MODEL_PROVIDER: 'azure', AZURE_OPENAI_ENDPOINT: 'http://127.evil.example', AZURE_OPENAI_API_KEY: 'k', AZURE_OPENAI_DEPLOYMENT: 'd' })[0]).toMatch(/loopback/);
    for (const url of ['ws://127.0.0.1:9/v1/realtime', 'ws://127.1.2.3:9/v1', 'ws://[::1]:9/v1']) {
      expect(loadConfig({ OPENAI_API_KEY: 'k', OPENAI_REALTIME_URL: url }).model.provider, url).toBe('openai');
    }
  });

  it('each comma-separated ADMIN_TOKEN meets the length rule', () => {
    expect(configError({ ADMIN_TOKEN: 'a'.repeat(16) + ',x' })[0]).toMatch(/^ADMIN_TOKEN: each comma-separated token must be at least 16 characters/);
    expect(configError({ ADMIN_TOKEN: 'a'.repeat(16) + ', ,' + 'b'.repeat(16) })[0]).toMatch(/^ADMIN_TOKEN: each comma-separated token/);
    expect(loadConfig({ ADMIN_TOKEN: 'a'.repeat(16) + ', ' + 'b'.repeat(20) }).adminToken).toBe('a'.repeat(16) + ', ' + 'b'.repeat(20));
  });

  it('numeric variables: empty or blank is unset (the default), only decimal digits are read', () => {
    const blank = loadConfig({ TWILIO_MARK_INTERVAL_MS: '', MAX_ACTIVE_CALLS: '  ', MODEL_APPEND_FRAMES: '', PORT: '' });
    expect(blank.twilioMarkIntervalMs).toBe(100);
    expect(blank.maxActiveCalls).toBe(0);
    expect(blank.modelAppendFrames).toBe(2);
    expect(blank.port).toBe(8080);
    const set = loadConfig({ TWILIO_MARK_INTERVAL_MS: ' 40 ', MAX_ACTIVE_CALLS: '250', MODEL_APPEND_FRAMES: '3' });
    expect([set.twilioMarkIntervalMs, set.maxActiveCalls, set.modelAppendFrames]).toEqual([40, 250, 3]);
    expect(configError({ MAX_ACTIVE_CALLS: '0x64', MODEL_APPEND_FRAMES: '1e0', TWILIO_MARK_INTERVAL_MS: '100ms', PORT: '80.5', USAGE_FLUSH_SECONDS: 'Infinity' }).sort()).toEqual([
      'MAX_ACTIVE_CALLS: must be a number written in decimal digits (e.g. 0), not "0x64"',
      'PORT: must be a whole number (e.g. 8080), not "80.5"',
      'TWILIO_MARK_INTERVAL_MS: must be a number written in decimal digits (e.g. 100), not "100ms"',
      'MODEL_APPEND_FRAMES: must be a number written in decimal digits (e.g. 2), not "1e0"',
      'USAGE_FLUSH_SECONDS: must be a number written in decimal digits (e.g. 30), not "Infinity"',
    ].sort());
    expect(configError({ MODEL_APPEND_FRAMES: '-1' })).toEqual(['MODEL_APPEND_FRAMES: must be at least 1']);
  });

  it('rejects short secrets and out-of-range numbers', () => {
    expect(configError({ STREAM_TOKEN_SECRET: 'short' })[0]).toMatch(/^STREAM_TOKEN_SECRET: must be at least 32/);
    expect(configError({ ADMIN_TOKEN: 'x' })[0]).toMatch(/^ADMIN_TOKEN: must be at least 16/);
    expect(configError({ PORT: '70000' })[0]).toMatch(/^PORT: must be at most 65535/);
    expect(configError({ DRAIN_TIMEOUT_SECONDS: '-1' })[0]).toMatch(/^DRAIN_TIMEOUT_SECONDS/);
  });

  it('DRAIN_MODE: migrate by default with Redis, wait without; migrate without Redis is refused', () => {
    expect(loadConfig({}).drainMode).toBe('wait');
    expect(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379' }).drainMode).toBe('migrate');
    expect(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379', DRAIN_MODE: 'wait' }).drainMode).toBe('wait');
    expect(loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379', DRAIN_MODE: ' migrate ' }).drainMode).toBe('migrate');
    expect(configError({ DRAIN_MODE: 'migrate' })).toEqual(['DRAIN_MODE: migrate needs REDIS_URL (the new pod reads the call from Redis)']);
    expect(configError({ DRAIN_MODE: 'move' })).toEqual(['DRAIN_MODE: must be migrate or wait']);
  });

  it('TWILIO_API_BASE_URL: api.twilio.com by default, plain http only for loopback', () => {
    expect(loadConfig({}).twilioApiBaseUrl).toBe('https://api.twilio.com');
    expect(loadConfig({ TWILIO_API_BASE_URL: 'http://127.0.0.1:4010/' }).twilioApiBaseUrl).toBe('http://127.0.0.1:4010');
    expect(loadConfig({ TWILIO_API_BASE_URL: 'https://twilio-proxy.internal' }).twilioApiBaseUrl).toBe('https://twilio-proxy.internal');
    expect(configError({ TWILIO_API_BASE_URL: 'http://twilio-proxy.internal' })[0]).toMatch(/^TWILIO_API_BASE_URL: plain http:\/\/ is allowed only for loopback/);
    expect(configError({ TWILIO_API_BASE_URL: 'ftp://x' })[0]).toMatch(/^TWILIO_API_BASE_URL: must be a URL/);
  });

  it('migration pacing knobs have bounded defaults', () => {
    expect(loadConfig({}).migration).toEqual({ concurrencyPerAccount: 5, maxAttempts: 4, busyWaitMs: 20_000, startDelayMs: 0 });
    expect(configError({ MIGRATION_CONCURRENCY_PER_ACCOUNT: '0' })[0]).toMatch(/^MIGRATION_CONCURRENCY_PER_ACCOUNT: must be at least 1/);
  });
});
