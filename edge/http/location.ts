/**
 * Where the client is: the `x-layernet-region` header (local testing, explicit override) or the
 * Workers `request.cf` object (colo coordinates), else unknown.
 */
import type { ClientLocation } from '../routing/score.js';

const REGION_RE = /^[a-z0-9-]{2,32}$/;

export function clientLocation(req: Request): ClientLocation {
  const out: ClientLocation = {};
  const header = req.headers.get('x-layernet-region');
  if (header && REGION_RE.test(header)) out.region = header;
  const cf = (req as Request & { cf?: { latitude?: unknown; longitude?: unknown } }).cf;
  if (cf) {
    const lat = Number(cf.latitude);
    const lon = Number(cf.longitude);
    if (cf.latitude !== undefined && Number.isFinite(lat) && Number.isFinite(lon) && Math.abs(lat) <= 90 && Math.abs(lon) <= 180) {
      out.latitude = lat;
      out.longitude = lon;
    }
  }
  return out;
}
