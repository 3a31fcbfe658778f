/**
 * The bench's harness floor: a relay on Switchboard's own stack (native uWebSockets.js for Twilio, `ws`
 * client to the model) that only splices base64 audio between the two sockets. What it measures
 * end to end is what the callers, the sim model, the kernel and two loopback hops cost, not a relay.
 *
 * Run: `node --import tsx bench/floor-relay.ts` with PORT, HOST, OPENAI_REALTIME_URL, OPENAI_API_KEY.
 */
import { pathToFileURL } from 'node:url';
import type * as UwsModule from 'uWebSockets.js';
import WebSocket from 'ws';
import { loadUws } from '../src/server/uws.js';

export interface FloorOptions {
  port: number;
  host: string;
  modelUrl: string;
  apiKey: string;
}

export interface FloorRelay {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

interface StreamState {
  model: WebSocket;
  mediaHead: string;
  clear: string;
  closed: boolean;
}

// Same scans as any relay that skips JSON.parse per frame; nothing else happens per frame.
const PAYLOAD = '"payload":"';
const DELTA = '"delta":"';
const AUDIO_DELTA = '"type":"response.output_audio.delta"';
const SPEECH_STARTED = '"type":"input_audio_buffer.speech_started"';
const APPEND_HEAD = '{"type":"input_audio_buffer.append","audio":"';
// One session.update and one response.create per call (the sim callers wait for a greeting).
const SESSION_UPDATE = JSON.stringify({
  type: 'session.update',
  session: {
    type: 'realtime',
    output_modalities: ['audio'],
    audio: { input: { format: { type: 'audio/pcmu' }, turn_detection: { type: 'server_vad' } }, output: { format: { type: 'audio/pcmu' } } },
    instructions: 'Greet the caller.',
  },
});
const RESPONSE_CREATE = '{"type":"response.create"}';

/** Start the floor relay; resolves once it listens. */
export async function startFloorRelay(o: FloorOptions): Promise<FloorRelay> {
  // The same loader as the relay: the production build where it loads, else the legacy one.
  const { uws } = loadUws({ allowFallback: false });
  let publicHost = `${o.host}:${o.port}`;
  const app = uws.App();
  const sockets = new Set<UwsModule.WebSocket<StreamState>>();
  app.get('/healthz', (res) => {
    res.end('ok');
  });
  app.post('/twilio/voice', (res) => {
    // Drain the form body (no signature check: this relay measures the sockets, not the webhook).
    res.onAborted(() => undefined);
    res.onData((_chunk, last) => {
      if (!last) return;
      res.cork(() => {
        res.writeHeader('content-type', 'text/xml');
        res.end(`<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="ws://${publicHost}/twilio/media"/></Connect></Response>`);
      });
    });
  });
  app.ws<StreamState>('/twilio/media', {
    maxPayloadLength: 64 * 1024,
    idleTimeout: 60,
    maxBackpressure: 1024 * 1024,
    upgrade: (res, req, ctx) => {
      const state: StreamState = { model: undefined as unknown as WebSocket, mediaHead: '', clear: '', closed: false };
      res.upgrade(state, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), ctx);
    },
    open: (sock) => {
      sockets.add(sock);
      const s = sock.getUserData();
      const model = new WebSocket(o.modelUrl, { headers: { Authorization: `Bearer ${o.apiKey}` }, perMessageDeflate: false });
      s.model = model;
      model.on('open', () => {
        model.send(SESSION_UPDATE);
        model.send(RESPONSE_CREATE);
      });
      model.on('message', (data: Buffer) => {
        if (s.closed || s.mediaHead === '') return;
        const text = data.toString('latin1');
        if (text.includes(AUDIO_DELTA)) {
          const i = text.lastIndexOf(DELTA);
          if (i < 0) return;
          const from = i + DELTA.length;
          sock.send(s.mediaHead + text.slice(from, text.indexOf('"', from)) + '"}}', false);
        } else if (text.includes(SPEECH_STARTED)) {
          sock.send(s.clear, false);
        }
      });
      model.on('error', () => undefined);
      model.on('close', () => {
        if (!s.closed) sock.end(1011, 'model closed');
      });
    },
    message: (sock, msg) => {
      const s = sock.getUserData();
      const text = Buffer.from(msg).toString('latin1');
      const i = text.indexOf(PAYLOAD);
      if (i >= 0) {
        const from = i + PAYLOAD.length;
        if (s.model.readyState === WebSocket.OPEN) s.model.send(APPEND_HEAD + text.slice(from, text.indexOf('"', from)) + '"}');
        return;
      }
      // Rare control messages: parsed whole.
      const ev = JSON.parse(text) as { event?: string; start?: { streamSid?: string } };
      if (ev.event === 'start' && typeof ev.start?.streamSid === 'string') {
        const sid = JSON.stringify(ev.start.streamSid);
        s.mediaHead = `{"event":"media","streamSid":${sid},"media":{"payload":"`;
        s.clear = `{"event":"clear","streamSid":${sid}}`;
      } else if (ev.event === 'stop') {
        s.model.close();
      }
    },
    close: (sock) => {
      sockets.delete(sock);
      const s = sock.getUserData();
      s.closed = true;
      if (s.model.readyState === WebSocket.OPEN || s.model.readyState === WebSocket.CONNECTING) s.model.terminate();
    },
  });
  const listenSocket = await new Promise<UwsModule.us_listen_socket>((resolve, reject) => {
    app.listen(o.host, o.port, (ls) => (ls ? resolve(ls) : reject(new Error(`floor relay: cannot listen on ${o.host}:${o.port}`))));
  });
  const port = uws.us_socket_local_port(listenSocket);
  publicHost = `${o.host}:${port}`;
  return {
    port,
    url: `http://${o.host}:${port}`,
    close: () => {
      for (const sock of [...sockets]) sock.end(1001, 'relay closing');
      uws.us_listen_socket_close(listenSocket);
      return Promise.resolve();
    },
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const env = process.env;
  startFloorRelay({
    port: Number(env.PORT ?? 5060),
    host: env.HOST ?? '127.0.0.1',
    modelUrl: env.OPENAI_REALTIME_URL ?? 'ws://127.0.0.1:1/realtime',
    apiKey: env.OPENAI_API_KEY ?? '',
  }).then(
    (r) => console.log(`floor relay listening on ${r.url}`),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
