// The shared bad-input cases live in @convergent/core/testing (core's push tests use them too).
export { expectUntouchedAndServing, GARBAGE_CASES, GARBAGE_LIMIT } from '@convergent/core/testing'
