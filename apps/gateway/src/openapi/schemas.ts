import { Type } from '@photoenhance/config';
import { JobOptionsInputSchema } from '@photoenhance/contracts';

/**
 * The one schema for the OpenAPI document only, where no contract states the shape: the multipart submission (built
 * from the options schema). The job view, the 202 answer, the options, the host state and problems are the contracts'
 * own schemas (packages/contracts), used as they are.
 */

/** POST /v1/jobs body: the image plus the options' fields (sent as multipart text fields, each optional). */
export const JobSubmissionSchema = Type.Object(
  {
    image: Type.String({ format: 'binary', description: 'The photo (JPEG, PNG, WebP, BMP or TIFF; the type is read from its bytes).' }),
    engine: Type.Optional(Type.String({ description: 'Engine name (GET /v1/engines); the default engine when left out.' })),
    ...Object.fromEntries(Object.entries(JobOptionsInputSchema.properties).map(([k, v]) => [k, Type.Optional(v)])),
  },
  { required: ['image'] },
);
