// The part of sodium-native (libsodium bindings) that aead.ts calls; the package ships no types.
declare module 'sodium-native' {
  interface Sodium {
    crypto_aead_xchacha20poly1305_ietf_encrypt(c: Uint8Array, m: Uint8Array, ad: Uint8Array | null, nsec: null, npub: Uint8Array, k: Uint8Array): number
    /** Throws if the data does not verify. */
    crypto_aead_xchacha20poly1305_ietf_decrypt(m: Uint8Array, nsec: null, c: Uint8Array, ad: Uint8Array | null, npub: Uint8Array, k: Uint8Array): number
    crypto_kdf_derive_from_key(subkey: Uint8Array, subkeyId: number, ctx: Uint8Array, key: Uint8Array): void
    randombytes_buf(buf: Uint8Array): void
  }
  const sodium: Sodium
  export default sodium
}
