/**
 * How an entity is laid out in its Automerge document: its fields live directly at the root
 * (the root map is shared by every replica, so two replicas that create the same entity
 * concurrently merge field by field), next to one reserved key for the delete flag.
 */

/**
 * The delete flag: absent = never written, false = live, true = deleted. Only delete()
 * writes true and only a put on a non-live document writes false, so a delete wins over
 * updates concurrent with it and a causally later put brings the entity back.
 * The NUL prefix keeps it out of the way of real field names; read() hides it.
 */
export const DELETED_KEY = '\u0000deleted'
