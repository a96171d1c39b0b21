// The npm fhir-kit-client package's compartment search by POST (issue 28), against a running
// emrsync. Run by tests/api/clients_more.rs as:
//   node fhir_kit_compartment.mjs BASE_URL TOKEN PATIENT_ID CODE
// Prints what the client got back as JSON; the Rust test asserts on it.
import { Client } from 'fhir-kit-client';

const [base, token, patient, code] = process.argv.slice(2);
const client = new Client({ baseUrl: base, bearerToken: token });
const ids = (bundle) => (bundle.entry || []).map((e) => e.resource.id).sort();
const search = (postSearch, searchParams) =>
  client.compartmentSearch({
    resourceType: 'Observation',
    compartment: { resourceType: 'Patient', id: patient },
    searchParams,
    options: { postSearch },
  });
const posted = await search(true, { code });
const all = await search(true, {});
const got = await search(false, { code });
console.log(JSON.stringify({ posted: ids(posted), all: ids(all), got: ids(got), type: posted.type }));
