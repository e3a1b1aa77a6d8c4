// Loads an automerge document written by `concord export --format automerge`
// and prints what the JavaScript package sees: change count and the document.
// Usage: node load.mjs FILE
import * as Automerge from "@automerge/automerge";
import { readFileSync } from "node:fs";

const doc = Automerge.load(new Uint8Array(readFileSync(process.argv[2])));
console.log(JSON.stringify({ changes: Automerge.getAllChanges(doc).length, doc }));
