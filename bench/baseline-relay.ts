/**
 * The bench's baseline: a relay written the way the public Twilio + OpenAI Realtime Node sample is
 * (twilio-samples/speech-assistant-openai-realtime-api-node, index.js), on `ws` + node:http instead
 * of fastify. Deliberately NOT optimised: JSON.parse/JSON.stringify of every message both ways, a
 * mark per outbound delta, the sample's console logging, no backpressure. Switchboard is elsewhere.
 *
 * Run: `node --import tsx bench/baseline-relay.ts` with PORT, HOST, OPENAI_REALTIME_URL, OPENAI_API_KEY.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import WebSocket, { WebSocketServer } from 'ws';

export interface BaselineOptions {
  port: number;
  host: string;
  /** ws(s) URL of the realtime model (the sample hard-codes api.openai.com). */
  modelUrl: string;
  apiKey: string;
  /** The sample logs with console.log; tests pass a quieter one. */
  log?: (...args: unknown[]) => void;
}

export interface BaselineRelay {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

const SYSTEM_MESSAGE =
  'You are a helpful and bubbly AI assistant who loves to chat about anything the user is interested about and is prepared to offer them facts.';
const VOICE = 'alloy';

// As in the sample: these event types are logged whole.
const LOG_EVENT_TYPES = [
  'error',
  'response.content.done',
  'rate_limits.updated',
  'response.done',
  'input_audio_buffer.committed',
  'input_audio_buffer.speech_stopped',
  'input_audio_buffer.speech_started',
  'session.created',
  'session.updated',
];

const SHOW_TIMING_MATH = false;

/* eslint-disable @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-member-access,
   @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-argument --
   the sample handles every message as untyped JSON; that cost is what the baseline measures. */

/** Start the baseline relay; resolves once it listens. */
export async function startBaselineRelay(o: BaselineOptions): Promise<BaselineRelay> {
  const log = o.log ?? console.log;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/__mem') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(process.memoryUsage()));
      return;
    }
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: 'Twilio Media Stream Server is running!' }));
      return;
    }
    if (path === '/incoming-call' || path === '/twilio/voice') {
      // The sample reads no body and checks no signature; drain the form so the socket can be reused.
      req.resume();
      req.on('end', () => {
        const twimlResponse = `<?xml version="1.0" encoding="UTF-8"?>
                          <Response>
                              <Say>Please wait while we connect your call to the A. I. voice assistant</Say>
                              <Pause length="1"/>
                              <Say>O.K. you can start talking!</Say>
                              <Connect>
                                  <Stream url="ws://${req.headers.host ?? ''}/media-stream" />
                              </Connect>
                          </Response>`;
        res.writeHead(200, { 'content-type': 'text/xml' });
        res.end(twimlResponse);
      });
      return;
    }
    res.writeHead(404);
    res.end();
  });
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  server.on('upgrade', (req: IncomingMessage, socket, head) => {
    if ((req.url ?? '').split('?')[0] !== '/media-stream') {
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => onMediaStream(ws, o, log));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://${o.host}:${port}`,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function onMediaStream(connection: WebSocket, o: BaselineOptions, log: (...args: unknown[]) => void): void {
  log('Client connected');

  // Connection-specific state
  let streamSid: string | null = null;
  let latestMediaTimestamp: any = 0;
  let lastAssistantItem: string | null = null;
  let markQueue: string[] = [];
  let responseStartTimestampTwilio: any = null;

  const openAiWs = new WebSocket(o.modelUrl, {
    headers: { Authorization: `Bearer ${o.apiKey}` },
    perMessageDeflate: false,
  });

  const initializeSession = (): void => {
    const sessionUpdate = {
      type: 'session.update',
      session: {
        type: 'realtime',
        model: 'gpt-realtime',
        output_modalities: ['audio'],
        audio: {
          input: { format: { type: 'audio/pcmu' }, turn_detection: { type: 'server_vad' } },
          output: { format: { type: 'audio/pcmu' }, voice: VOICE },
        },
        instructions: SYSTEM_MESSAGE,
      },
    };
    log('Sending session update:', JSON.stringify(sessionUpdate));
    openAiWs.send(JSON.stringify(sessionUpdate));
    // The sample's "have the AI speak first" option, on: Twilio callers expect a greeting.
    sendInitialConversationItem();
  };

  const sendInitialConversationItem = (): void => {
    const initialConversationItem = {
      type: 'conversation.item.create',
      item: {
        type: 'message',
        role: 'user',
        content: [{ type: 'input_text', text: 'Greet the user with "Hello there! How can I help you?"' }],
      },
    };
    if (SHOW_TIMING_MATH) log('Sending initial conversation item:', JSON.stringify(initialConversationItem));
    openAiWs.send(JSON.stringify(initialConversationItem));
    openAiWs.send(JSON.stringify({ type: 'response.create' }));
  };

  // Barge-in with the sample's clock: elapsed Twilio media time since the response's first delta.
  const handleSpeechStartedEvent = (): void => {
    if (markQueue.length > 0 && responseStartTimestampTwilio != null) {
      const elapsedTime = latestMediaTimestamp - responseStartTimestampTwilio;
      if (SHOW_TIMING_MATH) log(`Calculating elapsed time for truncation: ${latestMediaTimestamp} - ${responseStartTimestampTwilio} = ${elapsedTime}ms`);
      if (lastAssistantItem) {
        const truncateEvent = { type: 'conversation.item.truncate', item_id: lastAssistantItem, content_index: 0, audio_end_ms: elapsedTime };
        if (SHOW_TIMING_MATH) log('Sending truncation event:', JSON.stringify(truncateEvent));
        openAiWs.send(JSON.stringify(truncateEvent));
      }
      connection.send(JSON.stringify({ event: 'clear', streamSid: streamSid }));
      markQueue = [];
      lastAssistantItem = null;
      responseStartTimestampTwilio = null;
    }
  };

  const sendMark = (): void => {
    if (streamSid) {
      const markEvent = { event: 'mark', streamSid: streamSid, mark: { name: 'responsePart' } };
      connection.send(JSON.stringify(markEvent));
      markQueue.push('responsePart');
    }
  };

  openAiWs.on('open', () => {
    log('Connected to the OpenAI Realtime API');
    setTimeout(initializeSession, 100);
  });

  openAiWs.on('message', (data) => {
    try {
      const response: any = JSON.parse((data as Buffer).toString());
      if (LOG_EVENT_TYPES.includes(response.type)) log(`Received event: ${response.type}`, response);
      if (response.type === 'response.output_audio.delta' && response.delta) {
        const audioDelta = { event: 'media', streamSid: streamSid, media: { payload: response.delta } };
        connection.send(JSON.stringify(audioDelta));
        if (!responseStartTimestampTwilio) {
          responseStartTimestampTwilio = latestMediaTimestamp;
          if (SHOW_TIMING_MATH) log(`Setting start timestamp for new response: ${responseStartTimestampTwilio}ms`);
        }
        if (response.item_id) lastAssistantItem = response.item_id;
        sendMark();
      }
      if (response.type === 'input_audio_buffer.speech_started') handleSpeechStartedEvent();
    } catch (error) {
      console.error('Error processing OpenAI message:', error, 'Raw message:', data);
    }
  });

  connection.on('message', (message) => {
    try {
      const data: any = JSON.parse((message as Buffer).toString());
      switch (data.event) {
        case 'media':
          latestMediaTimestamp = data.media.timestamp;
          if (SHOW_TIMING_MATH) log(`Received media message with timestamp: ${latestMediaTimestamp}ms`);
          if (openAiWs.readyState === WebSocket.OPEN) {
            const audioAppend = { type: 'input_audio_buffer.append', audio: data.media.payload };
            openAiWs.send(JSON.stringify(audioAppend));
          }
          break;
        case 'start':
          streamSid = data.start.streamSid;
          log('Incoming stream has started', streamSid);
          responseStartTimestampTwilio = null;
          latestMediaTimestamp = 0;
          break;
        case 'mark':
          if (markQueue.length > 0) markQueue.shift();
          break;
        default:
          log('Received non-media event:', data.event);
          break;
      }
    } catch (error) {
      console.error('Error parsing message:', error, 'Message:', message);
    }
  });

  connection.on('close', () => {
    if (openAiWs.readyState === WebSocket.OPEN) openAiWs.close();
    log('Client disconnected.');
  });
  openAiWs.on('close', () => log('Disconnected from the OpenAI Realtime API'));
  openAiWs.on('error', (error) => console.error('Error in the OpenAI WebSocket:', error));
}
/* eslint-enable @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-member-access,
   @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-argument */

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const env = process.env;
  startBaselineRelay({
    port: Number(env.PORT ?? 5050),
    host: env.HOST ?? '127.0.0.1',
    modelUrl: env.OPENAI_REALTIME_URL ?? 'wss://api.openai.com/v1/realtime?model=gpt-realtime',
    apiKey: env.OPENAI_API_KEY ?? '',
  }).then(
    (r) => console.log(`Server is listening on port ${r.port}`),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
