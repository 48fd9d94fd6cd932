/**
 * How an entity is laid out in its Y.Doc. Both roots are named root types, so two replicas
 * that create the same entity concurrently share them and merge field by field.
 */

/** The entity value: a Y.Map whose fields mirror the JSON object. */
export const VALUE_ROOT = 'value'

/** Bookkeeping: the delete flag. */
export const META_ROOT = 'meta'

/**
 * meta.deleted: absent = never written, false = live, true = deleted. Only delete() writes
 * true and only a put on a non-live document writes false, so a delete wins over updates
 * concurrent with it and a causally later put brings the entity back.
 */
export const DELETED_KEY = 'deleted'

export const ROOT_NAMES: ReadonlySet<string> = new Set([VALUE_ROOT, META_ROOT])
