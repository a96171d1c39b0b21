// Medplum's TypeScript client (npm @medplum/core) runs a system Bulk Data export against a
// running emrsync, as a payer's integration built on it would: a Backend Services token from a
// client assertion it signs (ES384), `bulkExport` (which kicks off with POST and polls), then
// every file downloaded with the token. Run by tests/api/bulk_export.rs as:
//   node medplum_export.mjs ROOT_URL CLIENT_ID KID PRIVATE_KEY_PEM_FILE
// Prints what it got as JSON; the Rust test asserts on it.
import { MedplumClient } from '@medplum/core';
import { createPrivateKey, randomUUID, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';

const [root, clientId, kid, keyFile] = process.argv.slice(2);
const config = await (await fetch(`${root}/fhir/.well-known/smart-configuration`)).json();
const tokenUrl = config.token_endpoint;

const b64url = (data) => Buffer.from(data).toString('base64url');
const now = Math.floor(Date.now() / 1000);
const header = b64url(JSON.stringify({ alg: 'ES384', typ: 'JWT', kid }));
const claims = b64url(
  JSON.stringify({ iss: clientId, sub: clientId, aud: tokenUrl, exp: now + 240, jti: randomUUID() }),
);
const key = createPrivateKey(readFileSync(keyFile));
const signature = sign('sha384', Buffer.from(`${header}.${claims}`), { key, dsaEncoding: 'ieee-p1363' });
const assertion = `${header}.${claims}.${b64url(signature)}`;

const medplum = new MedplumClient({ baseUrl: `${root}/`, fhirUrlPath: 'fhir/', tokenUrl, fetch });
await medplum.startJwtAssertionLogin(assertion);
const manifest = await medplum.bulkExport('', undefined, undefined, {
  pollStatusOnAccepted: true,
  pollStatusPeriod: 200,
});
const got = {};
for (const out of manifest.output ?? []) {
  const r = await fetch(out.url, { headers: { Authorization: `Bearer ${medplum.getAccessToken()}` } });
  const lines = (await r.text()).split('\n').filter((l) => l.length > 0);
  for (const line of lines) {
    const resource = JSON.parse(line);
    (got[resource.resourceType] ??= []).push(resource.id);
  }
  if (lines.length !== out.count) throw new Error(`${out.url}: ${lines.length} lines, count ${out.count}`);
}
for (const t of Object.keys(got)) got[t].sort();
console.log(JSON.stringify({ transactionTime: manifest.transactionTime, got }));
