// Uploading an attachment with Uppy's tus plugin (@uppy/core, @uppy/tus), configured for the cipherpost relay:
// docs/attachments.md quotes the `uppy` region word for word (test/examples/docs-snippets.test.ts), and
// test/e2e/uppy.test.ts runs it in Node against a local relay.
import Uppy from "@uppy/core";
import Tus from "@uppy/tus";

// #region uppy
/** An Uppy that uploads to the relay's tus endpoint as this device (`auth`: `Basic …`, the device credentials). */
export function cipherpostUppy(relay: string, auth: string) {
  return new Uppy().use(Tus, {
    endpoint: `${relay}/v1/attachments/tus/`,
    headers: { Authorization: auth },
    // Under the relay's MAX_PATCH_BYTES (50 MiB by default), and a multiple of UPLOAD_PART_BYTES (10 MiB) so
    // whole parts go straight to R2. Uppy's default sends a file in one PATCH: over 50 MiB, that is a 413.
    chunkSize: 20 * 1024 * 1024,
    // No Upload-Metadata. By default Uppy sends the file's name and type there, which the relay can read; they
    // belong inside the encrypted message that carries the attachment id.
    allowedMetaFields: [],
  });
}

/**
 * Uploads an attachment already encrypted on this device (a Blob in the browser; tus-js-client's Node build, which
 * Uppy uses in Node, takes a Buffer) and answers its id: the last segment of the upload URL.
 */
export async function uploadAttachment(uppy: ReturnType<typeof cipherpostUppy>, ciphertext: Blob): Promise<string> {
  // A neutral name: Uppy wants one, and with allowedMetaFields [] it never leaves the device.
  const fileId = uppy.addFile({ name: "attachment", type: "application/octet-stream", data: ciphertext });
  const result = await uppy.upload();
  const uploaded = result?.successful?.find((f) => f.id === fileId);
  if (!uploaded?.uploadURL) throw new Error(`upload failed: ${String(result?.failed?.[0]?.error)}`);
  uppy.removeFile(fileId);
  return uploaded.uploadURL.split("/").pop()!;
}
// #endregion uppy
