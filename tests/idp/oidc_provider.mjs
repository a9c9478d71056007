// A real OpenID Connect provider for the end-to-end tests: panva's `oidc-provider` (the
// certified Node implementation), configured like an organisation's IdP would be for Airlock.
//
//   node tests/idp/oidc_provider.mjs          (NODE_PATH or AIRLOCK_TEST_NODE_MODULES set)
//
// Prints one line `{"issuer": "http://127.0.0.1:PORT"}` on stdout once it listens, then serves
// until killed. What it offers:
// - discovery, JWKS (an RS256 and an ES256 key), token endpoint;
// - client `airlock-svc` (secret `svc-secret`): client credentials, for workloads;
// - client `airlock-cli` (public, native): device authorization flow and authorization code +
//   PKCE on a loopback redirect (any port), with refresh tokens, for people (`airlock login`);
//   the development login form accepts any user name. AIRLOCK_IDP_NO_DEVICE=1 turns the device
//   flow off, as some IdPs do;
// - access tokens as RFC 9068 JWTs (`typ: at+jwt`) for the resource `urn:airlock`, signed
//   ES256, carrying a `groups` claim;
// - `GET /__stats`: requests served per path, so tests can count JWKS fetches.
import { createRequire } from 'node:module';
import http from 'node:http';

const require = createRequire(`${process.env.AIRLOCK_TEST_NODE_MODULES || process.env.NODE_PATH}/`);
const { default: Provider } = await import(require.resolve('oidc-provider'));
const jose = await import(require.resolve('jose'));

const RESOURCE = 'urn:airlock';
const DEVICE = process.env.AIRLOCK_IDP_NO_DEVICE !== '1';
// Who is in which group: `reviewer` reviews held requests, `root` administers Airlock; any
// other name is an engineer.
const GROUPS = {
  'airlock-svc': ['services'],
  reviewer: ['eng', 'security'],
  root: ['airlock-admins', 'security'],
  default: ['eng'],
};

async function key(alg, kid) {
  const { privateKey } = await jose.generateKeyPair(alg, { extractable: true, modulusLength: 2048 });
  return { ...(await jose.exportJWK(privateKey)), kid, alg, use: 'sig' };
}

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'airlock-svc',
      client_secret: 'svc-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_post',
    },
    {
      client_id: 'airlock-cli',
      application_type: 'native',
      grant_types: [...(DEVICE ? ['urn:ietf:params:oauth:grant-type:device_code'] : []), 'authorization_code', 'refresh_token'],
      response_types: ['code'],
      // `airlock login` and the admin web UI (native loopback redirects: any port).
      redirect_uris: ['http://127.0.0.1/callback', 'http://127.0.0.1/ui/callback'],
      token_endpoint_auth_method: 'none',
    },
  ],
  jwks: { keys: [await key('RS256', 'rsa-1'), await key('ES256', 'ec-1')] },
  scopes: ['openid', 'offline_access', 'api'],
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    deviceFlow: { enabled: DEVICE },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async () => ({
        scope: 'api',
        audience: RESOURCE,
        accessTokenTTL: 600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
  async findAccount(_ctx, sub) {
    return { accountId: sub, async claims() { return { sub }; } };
  },
  async extraTokenClaims(_ctx, token) {
    const who = token.accountId || token.clientId;
    return { groups: GROUPS[who] || GROUPS.default };
  },
  async issueRefreshToken(_ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  ttl: { AccessToken: 600, ClientCredentials: 600, DeviceCode: 600, RefreshToken: 86400, Grant: 86400, Session: 86400, Interaction: 600 },
});
provider.proxy = false;

const stats = {};
provider.use(async (ctx, next) => {
  if (ctx.path === '/__stats') {
    ctx.body = stats;
    return;
  }
  stats[ctx.path] = (stats[ctx.path] || 0) + 1;
  await next();
});

server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
