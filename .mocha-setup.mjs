// Loaded by mocha in every worker (.mocharc.json `require`). fast-check 4 attaches a failed
// property's error as the `cause` of its report, and mocha's parallel mode drops `cause` when a
// worker hands the failure back: the seed and path showed, the assertion did not. Putting the
// error in the report's message keeps it under `npm test`.
import fc from 'fast-check'

fc.configureGlobal({ ...fc.readConfigureGlobal(), includeErrorInReport: true })
