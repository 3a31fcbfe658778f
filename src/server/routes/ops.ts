/**
 * Operations routes: liveness, readiness (draining or store down = 503) and Prometheus metrics.
 */
import { errorMessage } from '../../errors.js';
import type { RelayContext } from '../context.js';
import { reply, replyError, track } from '../http.js';

export function registerOpsRoutes(ctx: RelayContext): void {
  const { app, log, metrics, store } = ctx;

  app.get('/healthz', (res) => {
    res.writeHeader('content-type', 'application/json').end('{"status":"ok"}');
  });

  app.get('/readyz', (res) => {
    const h = track(res);
    if (ctx.isDraining())
      return replyError(h, '503 Service Unavailable', 'draining', 'draining: taking no new calls');
    if (!ctx.tenantsReady())
      return replyError(h, '503 Service Unavailable', 'store_unavailable', 'tenant registry not loaded: state store unreachable');
    void store
      .ping()
      .catch(() => false)
      .then((ok) => {
        if (ok) reply(h, '200 OK', '{"status":"ready"}', { 'content-type': 'application/json' });
        else replyError(h, '503 Service Unavailable', 'store_unavailable', 'state store unreachable');
      });
  });

  app.get('/metrics', (res) => {
    const h = track(res);
    metrics.registry
      .metrics()
      .then((text) => reply(h, '200 OK', text, { 'content-type': metrics.registry.contentType }))
      .catch((err: unknown) => {
        log.error({ code: 'internal', route: 'metrics', err: errorMessage(err) }, 'metrics failed');
        replyError(h, '500 Internal Server Error', 'internal', 'internal error');
      });
  });
}
