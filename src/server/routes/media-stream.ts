/**
 * The media-stream WebSocket route (/twilio/media): the upgrade's rate limits and caps, then one
 * CallBridge per socket. Frames go straight from uWS to the bridge; nothing here runs per frame.
 */
import type { HttpRequest, HttpResponse, WebSocket } from 'uWebSockets.js';
import { CallBridge, type BridgeDeps, type TwilioSocket } from '../../call/index.js';
import { ABNORMAL_CLOSE, CloseCode } from '../../errors.js';
import type { RelayContext } from '../context.js';
import { remoteAddress } from '../http.js';
import type { LiveCalls } from '../live-calls.js';
import { clientAddress, type ConnectionRateLimiter } from '../rate-limit.js';

interface SocketData {
  bridge: CallBridge | undefined;
  signature: string | undefined;
  remote: string;
  refuse: { code: number; reason: string } | undefined;
}

export interface MediaStreamDeps {
  calls: LiveCalls;
  bridge: BridgeDeps;
  /** Connection attempts per client address (MEDIA_CONNECT_PER_MINUTE); none when off. */
  limiter: ConnectionRateLimiter | undefined;
  /** uWS's `DISABLED` compression constant. */
  compressionDisabled: number;
}

export function registerMediaStreamRoute(ctx: RelayContext, deps: MediaStreamDeps): void {
  const { app, config, log, metrics } = ctx;
  const { calls, limiter } = deps;
  app.ws<SocketData>('/twilio/media', {
    compression: deps.compressionDisabled,
    // Twice the bridge's own limit: frames between 1x and 2x reach the bridge, which closes with
    // 1009 and counts them; past 2x uWS drops the connection itself (see close below).
    maxPayloadLength: config.twilioMaxMessageBytes * 2,
    // Twilio streams 50 messages/s; 30 s of silence on the socket means it is dead.
    idleTimeout: 32,
    sendPingsAutomatically: true,
    // Hard cap above our own soft cap (the call's playout, call/twilio-playout.ts, drops audio past twilioMaxBackpressureBytes).
    maxBackpressure: config.twilioMaxBackpressureBytes * 2,
    closeOnBackpressureLimit: false,
    maxLifetime: Math.ceil(config.maxCallSeconds / 60) + 1,
    upgrade(res: HttpResponse, req: HttpRequest, context) {
      // Headers die when this callback returns: read everything first.
      const peer = remoteAddress(res);
      const remote = clientAddress(peer, req.getHeader('x-forwarded-for') || undefined, config.trustedProxyHops);
      if (limiter && !limiter.admit(remote)) {
        metrics.webhooks.labels('media_upgrade', 'rate_limited').inc();
        log.warn({ code: 'rate_limited', remote }, 'media socket connection attempts over the limit');
        res.writeStatus('429 Too Many Requests').end();
        return;
      }
      if (config.maxUnstartedSockets > 0 && calls.unstarted >= config.maxUnstartedSockets) {
        metrics.webhooks.labels('media_upgrade', 'too_many_unstarted').inc();
        log.warn({ code: 'rate_limited', remote, unstarted: calls.unstarted }, 'too many media sockets without an authorised start: upgrade refused');
        res.writeStatus('503 Service Unavailable').end();
        return;
      }
      const data: SocketData = {
        bridge: undefined,
        signature: req.getHeader('x-twilio-signature') || undefined,
        remote,
        refuse: calls.draining ? { code: CloseCode.draining, reason: 'relay draining' } : undefined,
      };
      res.upgrade(
        data,
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },
    open(ws) {
      const data = ws.getUserData();
      if (data.refuse) {
        log.info({ code: 'draining', remote: data.remote }, 'media stream refused');
        ws.end(data.refuse.code, data.refuse.reason);
        return;
      }
      calls.socketOpened(ws);
      const twilio: TwilioSocket = {
        send: (text) => ws.send(text, false),
        bufferedAmount: () => ws.getBufferedAmount(),
        cork: (fn) => {
          ws.cork(fn);
        },
        end: (code, reason) => ws.end(code, reason),
      };
      const bridge = new CallBridge(twilio, deps.bridge, data.signature, calls.ended);
      data.bridge = bridge;
      calls.bridgeOpened(bridge);
    },
    message(ws, message, isBinary) {
      ws.getUserData().bridge?.onTwilioMessage(Buffer.from(message), isBinary);
    },
    drain(ws) {
      ws.getUserData().bridge?.onTwilioDrain();
    },
    close(ws: WebSocket<SocketData>, code, message) {
      calls.socketClosed(ws);
      const bridge = ws.getUserData().bridge;
      if (!bridge) return;
      // uWS force-closes (1006) on frames it refuses before any message callback; those are
      // protocol errors, not hang-ups.
      if (code === ABNORMAL_CLOSE) {
        const why = Buffer.from(message).toString();
        if (why === 'Received invalid UTF-8') return bridge.onTwilioRefused('invalid_utf8', why);
        if (why === 'Received too big message') return bridge.onTwilioRefused('too_large', why);
      }
      bridge.onTwilioClose(code);
    },
  });
}
