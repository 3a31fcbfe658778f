/**
 * Tenant webhook tools: a function call becomes a signed HTTPS POST to the tenant's endpoint
 * (Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature `v1,<base64 HMAC-SHA256>`),
 * with a deadline, a response size cap and an SSRF guard on the resolved address. Which tools a
 * tenant has is the tenant schema's business; failures come back to the model as tool errors.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { isBlockedAddress } from '../ssrf.js';
import { propagation, context as otelContext } from '@opentelemetry/api';
import { errorMessage, SwitchboardError } from '../errors.js';
import type { SecretRef, WebhookTool } from '../tenants/index.js';
import { toolError, type ToolContext, type ToolResult } from './tool-runner.js';

export interface WebhookToolOptions {
  /**
   * Dev only: allow private, loopback and link-local targets and plain http. Never in production:
   * a tenant could otherwise make the relay call its own cluster's internals.
   */
  allowPrivateNetworks?: boolean;
  /** Resolve the tenant's secret reference (tenant-registry's resolveSecret with the process env). */
  resolveSecret: (ref: SecretRef, where: string) => string;
  now?: () => number;
}

/**
 * Resolve `url`'s host and refuse non-public addresses (unless allowed). Returns the vetted
 * address; the request then connects to exactly that address, so DNS cannot change in between.
 * @throws SwitchboardError `forbidden` for a refused target, `bad_request` for a bad URL.
 */
export async function vetTarget(url: URL, allowPrivate: boolean): Promise<{ address: string; family: 4 | 6 }> {
  if (url.protocol !== 'https:' && !(allowPrivate && url.protocol === 'http:')) {
    throw new SwitchboardError('forbidden', `webhook tools must use https (got ${url.protocol})`);
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const literal = isIP(host);
  const addrs = literal ? [{ address: host, family: literal }] : await lookup(host, { all: true, verbatim: true });
  if (addrs.length === 0) throw new SwitchboardError('bad_request', `cannot resolve ${host}`);
  if (!allowPrivate) {
    // Every answer must be public: a mixed answer is how rebinding attacks slip through.
    const bad = addrs.find((a) => isBlockedAddress(a.address));
    if (bad) throw new SwitchboardError('forbidden', `refusing to call ${host}: ${bad.address} is not a public address`);
  }
  const first = addrs[0]!;
  return { address: first.address, family: first.family === 6 ? 6 : 4 };
}

/** The Standard Webhooks key: `whsec_<base64>` decoded, anything else used as UTF-8 bytes. */
export function webhookKey(secret: string): Buffer {
  return secret.startsWith('whsec_') ? Buffer.from(secret.slice(6), 'base64') : Buffer.from(secret, 'utf8');
}

/** `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>` (Standard Webhooks). */
export function signWebhook(secret: string, id: string, timestampSeconds: number, body: string): string {
  const mac = createHmac('sha256', webhookKey(secret)).update(`${id}.${timestampSeconds}.${body}`).digest('base64');
  return `v1,${mac}`;
}

interface Reply {
  status: number;
  body: string;
}

function post(url: URL, target: { address: string; family: 4 | 6 }, headers: Record<string, string>, body: string, tool: WebhookTool, signal: AbortSignal): Promise<Reply> {
  return new Promise((resolve, reject) => {
    // Connect to the vetted address only (IP literals skip lookup; names get this pinned answer).
    const pinned: LookupFunction = (_host, opts, cb) => {
      if (typeof opts === 'object' && opts.all) (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [target]);
      else cb(null, target.address, target.family);
    };
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(
      url,
      { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, lookup: pinned, signal },
      (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > tool.maxResponseBytes) {
            res.destroy();
            req.destroy();
            reject(new SwitchboardError('payload_too_large', `response larger than ${tool.maxResponseBytes} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Call one tenant webhook tool. Never throws: refused targets, timeouts, oversize or non-2xx
 * answers come back as tool errors the model can apologise for.
 */
export async function runWebhookTool(tool: WebhookTool, args: unknown, ctx: ToolContext, o: WebhookToolOptions): Promise<ToolResult> {
  let url: URL;
  try {
    url = new URL(tool.url);
  } catch {
    return toolError('error', `The ${tool.name} tool is misconfigured.`);
  }
  const now = o.now ?? Date.now;
  const id = `msg_${randomUUID()}`;
  const timestamp = Math.floor(now() / 1000);
  const body = JSON.stringify({ tool: tool.name, callSid: ctx.callSid, callId: ctx.callId, tenantId: ctx.tenant.id, arguments: args });
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': 'switchboard-webhook-tools/1',
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    // The model's call_id is the tenant's idempotency key too: a replay must not act twice.
    'idempotency-key': `${ctx.callSid}:${ctx.callId}`,
  };
  if (ctx.traceparent) headers['traceparent'] = ctx.traceparent;
  else propagation.inject(otelContext.active(), headers);
  const timeout = AbortSignal.timeout(tool.timeoutMs);
  const signal = AbortSignal.any([timeout, ctx.signal]);
  let reply: Reply;
  try {
    const secret = o.resolveSecret(tool.secret, `webhookTools.${tool.name}.secret`);
    headers['webhook-signature'] = signWebhook(secret, id, timestamp, body);
    const target = await vetTarget(url, o.allowPrivateNetworks === true);
    reply = await post(url, target, headers, body, tool, signal);
  } catch (err) {
    if (timeout.aborted) {
      ctx.log.warn({ code: 'tool_timeout', tool: tool.name, ms: tool.timeoutMs }, 'webhook tool timed out');
      return toolError('timeout', `The ${tool.name} tool did not answer in time; apologise and offer another way to help.`);
    }
    const code = err instanceof SwitchboardError ? err.code : 'tool_failed';
    ctx.log.warn({ code, tool: tool.name, err: errorMessage(err) }, 'webhook tool failed');
    return toolError('error', `The ${tool.name} tool is unavailable right now; apologise and offer another way to help.`);
  }
  if (reply.status < 200 || reply.status >= 300) {
    ctx.log.warn({ code: 'tool_failed', tool: tool.name, status: reply.status }, 'webhook tool answered an error');
    return toolError('error', `The ${tool.name} tool failed (HTTP ${reply.status}); apologise and offer another way to help.`);
  }
  // The tenant's JSON goes to the model as is; anything else is wrapped so the output stays JSON.
  try {
    JSON.parse(reply.body);
    return { outcome: 'ok', output: reply.body };
  } catch {
    return { outcome: 'ok', output: JSON.stringify({ ok: true, result: reply.body }) };
  }
}
