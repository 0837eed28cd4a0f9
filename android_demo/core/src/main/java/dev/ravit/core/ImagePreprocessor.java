package dev.ravit.core;

import java.util.Arrays;

/**
 * Camera or gallery pixels → the submodels' image input.
 *
 * <p>Pixels come as ARGB {@code int}s in row-major order, as {@code Bitmap.getPixels}
 * gives them (alpha ignored). {@link #toTensor} packs them into the {@code [1, H, W, 3]}
 * RGB input: raw bytes 0..255 for int8 submodels (uint8 input, scale 1, zero point 0),
 * floats 0..255 for float ones; the models resize and normalise inside.
 *
 * <p>The static helpers prepare any frame in pure Java: {@link #centerCropBox} and
 * {@link #centerCropResize} (crop to the model's aspect ratio, then an antialiased
 * bilinear resize that matches TensorFlow's {@code tf.image.resize(..., "bilinear",
 * antialias=True)}, the resize the training data went through), and {@link #rotate} for
 * camera frames. The app may also scale with {@code Bitmap}; the core stays testable.
 */
public final class ImagePreprocessor {
    private final TensorSpec spec;
    private final int height;
    private final int width;

    /**
     * @param imageSpec the manifest's image input ({@link Manifest#imageSpec()}).
     * @throws IllegalArgumentException if the shape is not {@code [1, H, W, 3]} or the dtype is
     *     neither uint8 (int8 submodels) nor float32 (float submodels).
     */
    public ImagePreprocessor(TensorSpec imageSpec) {
        int[] shape = imageSpec.shape();
        if (shape.length != 4 || shape[0] != 1 || shape[3] != 3) {
            throw new IllegalArgumentException("Image input '" + imageSpec.name() + "' has shape " + Arrays.toString(shape)
                    + "; expected [1, H, W, 3] (one RGB image, NHWC).");
        }
        if (imageSpec.dtype() != DType.UINT8 && imageSpec.dtype() != DType.FLOAT32) {
            throw new IllegalArgumentException("Image input dtype " + imageSpec.dtype() + " is not supported: give "
                    + "uint8 pixels (int8 submodels) or float32 pixels 0..255 (float submodels); convert the model "
                    + "with the ravit_keras converter, which writes one of these.");
        }
        if (imageSpec.dtype() == DType.UINT8 && (imageSpec.scale() != 1.0 || imageSpec.zeroPoint() != 0)) {
            throw new IllegalArgumentException("uint8 image input with scale " + imageSpec.scale() + " and zero point "
                    + imageSpec.zeroPoint() + " is not supported: raw pixels need scale 1 and zero point 0.");
        }
        this.spec = imageSpec;
        this.height = shape[1];
        this.width = shape[2];
    }

    public int width() {
        return width;
    }

    public int height() {
        return height;
    }

    public DType dtype() {
        return spec.dtype();
    }

    /** {@link #toTensor(int[], int, int)} for pixels already of the model's size. */
    public TensorData toTensor(int[] argb) {
        return toTensor(argb, width, height);
    }

    /**
     * Packs ARGB pixels of exactly the model's input size into the image tensor.
     *
     * @throws IllegalArgumentException if the size or the pixel count is not the model's.
     */
    public TensorData toTensor(int[] argb, int pixelWidth, int pixelHeight) {
        if (pixelWidth != width || pixelHeight != height) {
            throw new IllegalArgumentException("Image is " + pixelWidth + "x" + pixelHeight + " but the model takes "
                    + width + "x" + height + " (width x height); resize it first (centerCropResize).");
        }
        if (argb.length != width * height) {
            throw new IllegalArgumentException("Got " + argb.length + " pixels; a " + width + "x" + height
                    + " image has " + width * height + ".");
        }
        int[] shape = {1, height, width, 3};
        if (spec.dtype() == DType.UINT8) {
            byte[] out = new byte[argb.length * 3];
            for (int i = 0, j = 0; i < argb.length; i++) {
                int p = argb[i];
                out[j++] = (byte) (p >> 16);
                out[j++] = (byte) (p >> 8);
                out[j++] = (byte) p;
            }
            return TensorData.uint8(shape, out);
        }
        float[] out = new float[argb.length * 3];
        for (int i = 0, j = 0; i < argb.length; i++) {
            int p = argb[i];
            out[j++] = (p >> 16) & 0xFF;
            out[j++] = (p >> 8) & 0xFF;
            out[j++] = p & 0xFF;
        }
        return TensorData.float32(shape, out);
    }

    /** Center crop + resize of any frame to the model's size, then {@link #toTensor}. */
    public TensorData fromFrame(int[] argb, int frameWidth, int frameHeight) {
        return toTensor(centerCropResize(argb, frameWidth, frameHeight, width, height));
    }

    // Pixel helpers -----------------------------------------------------------------------

    /**
     * The largest centred rectangle of the source with the destination's aspect ratio:
     * {@code {left, top, width, height}}. The kept side is rounded to the nearest pixel,
     * the offset rounded down.
     */
    public static int[] centerCropBox(int srcWidth, int srcHeight, int dstWidth, int dstHeight) {
        checkSize(srcWidth, srcHeight, "source");
        checkSize(dstWidth, dstHeight, "destination");
        long sw = srcWidth;
        long sh = srcHeight;
        if (sw * dstHeight > sh * dstWidth) {  // Source is wider: crop the width.
            int w = (int) Math.max(1, (sh * dstWidth + dstHeight / 2) / dstHeight);
            return new int[] {(srcWidth - w) / 2, 0, w, srcHeight};
        }
        int h = (int) Math.max(1, (sw * dstHeight + dstWidth / 2) / dstWidth);
        return new int[] {0, (srcHeight - h) / 2, srcWidth, h};
    }

    /** Crops the centre to the destination's aspect ratio, then {@link #resize}s. */
    public static int[] centerCropResize(int[] argb, int srcWidth, int srcHeight, int dstWidth, int dstHeight) {
        checkPixels(argb, srcWidth, srcHeight);
        int[] box = centerCropBox(srcWidth, srcHeight, dstWidth, dstHeight);
        int[] cropped = crop(argb, srcWidth, srcHeight, box[0], box[1], box[2], box[3]);
        return resize(cropped, box[2], box[3], dstWidth, dstHeight);
    }

    /** A rectangle of an image. */
    public static int[] crop(int[] argb, int srcWidth, int srcHeight, int left, int top, int w, int h) {
        checkPixels(argb, srcWidth, srcHeight);
        if (left < 0 || top < 0 || w < 1 || h < 1 || left + w > srcWidth || top + h > srcHeight) {
            throw new IllegalArgumentException("Crop " + w + "x" + h + " at (" + left + ", " + top + ") leaves the "
                    + srcWidth + "x" + srcHeight + " image.");
        }
        int[] out = new int[w * h];
        for (int y = 0; y < h; y++) {
            System.arraycopy(argb, (top + y) * srcWidth + left, out, y * w, w);
        }
        return out;
    }

    /**
     * Antialiased bilinear resize (a triangle filter widened by the down-scaling factor,
     * half-pixel centres), the rule of {@code tf.image.resize(method="bilinear",
     * antialias=True)}; channels rounded half to even and clipped to 0..255, alpha set to
     * 255. The same size returns a copy.
     */
    public static int[] resize(int[] argb, int srcWidth, int srcHeight, int dstWidth, int dstHeight) {
        checkPixels(argb, srcWidth, srcHeight);
        checkSize(dstWidth, dstHeight, "destination");
        if (srcWidth == dstWidth && srcHeight == dstHeight) {
            int[] out = argb.clone();
            for (int i = 0; i < out.length; i++) {
                out[i] |= 0xFF000000;
            }
            return out;
        }
        Spans cols = new Spans(srcWidth, dstWidth);
        Spans rows = new Spans(srcHeight, dstHeight);
        // Horizontal pass into doubles (3 channels), then vertical.
        double[] tmp = new double[srcHeight * dstWidth * 3];
        for (int y = 0; y < srcHeight; y++) {
            for (int x = 0; x < dstWidth; x++) {
                double r = 0;
                double g = 0;
                double b = 0;
                int start = cols.start[x];
                double[] w = cols.weights[x];
                for (int k = 0; k < w.length; k++) {
                    int p = argb[y * srcWidth + start + k];
                    r += w[k] * ((p >> 16) & 0xFF);
                    g += w[k] * ((p >> 8) & 0xFF);
                    b += w[k] * (p & 0xFF);
                }
                int o = (y * dstWidth + x) * 3;
                tmp[o] = r;
                tmp[o + 1] = g;
                tmp[o + 2] = b;
            }
        }
        int[] out = new int[dstWidth * dstHeight];
        for (int y = 0; y < dstHeight; y++) {
            int start = rows.start[y];
            double[] w = rows.weights[y];
            for (int x = 0; x < dstWidth; x++) {
                double r = 0;
                double g = 0;
                double b = 0;
                for (int k = 0; k < w.length; k++) {
                    int o = ((start + k) * dstWidth + x) * 3;
                    r += w[k] * tmp[o];
                    g += w[k] * tmp[o + 1];
                    b += w[k] * tmp[o + 2];
                }
                out[y * dstWidth + x] = 0xFF000000 | (toByte(r) << 16) | (toByte(g) << 8) | toByte(b);
            }
        }
        return out;
    }

    /**
     * Rotates clockwise by 0, 90, 180 or 270 degrees (CameraX's {@code rotationDegrees}).
     * For 90 and 270 the result is {@code srcHeight} wide and {@code srcWidth} high.
     */
    public static int[] rotate(int[] argb, int srcWidth, int srcHeight, int degrees) {
        checkPixels(argb, srcWidth, srcHeight);
        int d = ((degrees % 360) + 360) % 360;
        int[] out = new int[argb.length];
        switch (d) {
            case 0:
                return argb.clone();
            case 90:  // Output is srcHeight wide: (x, y) -> (srcHeight - 1 - y, x).
                for (int y = 0; y < srcHeight; y++) {
                    for (int x = 0; x < srcWidth; x++) {
                        out[x * srcHeight + (srcHeight - 1 - y)] = argb[y * srcWidth + x];
                    }
                }
                return out;
            case 180:
                for (int i = 0; i < argb.length; i++) {
                    out[argb.length - 1 - i] = argb[i];
                }
                return out;
            case 270:  // (x, y) -> (y, srcWidth - 1 - x).
                for (int y = 0; y < srcHeight; y++) {
                    for (int x = 0; x < srcWidth; x++) {
                        out[(srcWidth - 1 - x) * srcHeight + y] = argb[y * srcWidth + x];
                    }
                }
                return out;
            default:
                throw new IllegalArgumentException("Rotation must be a multiple of 90 degrees, got " + degrees + ".");
        }
    }

    private static int toByte(double v) {
        double r = Math.rint(v);
        return r <= 0 ? 0 : r >= 255 ? 255 : (int) r;
    }

    private static void checkSize(int w, int h, String what) {
        if (w < 1 || h < 1) {
            throw new IllegalArgumentException("The " + what + " size " + w + "x" + h + " must be positive.");
        }
    }

    private static void checkPixels(int[] argb, int w, int h) {
        checkSize(w, h, "image");
        if (argb.length != (long) w * h) {
            throw new IllegalArgumentException("Got " + argb.length + " pixels; a " + w + "x" + h + " image has "
                    + (long) w * h + ".");
        }
    }

    /** Per output pixel: the first source pixel and the normalised weights (TF's ComputeSpans). */
    private static final class Spans {
        final int[] start;
        final double[][] weights;

        Spans(int inSize, int outSize) {
            double scale = (double) outSize / inSize;
            double invScale = 1.0 / scale;
            double kernelScale = Math.max(invScale, 1.0);  // Antialias: widen the filter when shrinking.
            double radius = kernelScale;  // Triangle kernel of radius 1, scaled.
            start = new int[outSize];
            weights = new double[outSize][];
            for (int x = 0; x < outSize; x++) {
                double sample = (x + 0.5) * invScale;
                int lo = (int) Math.ceil(sample - radius - 0.5);
                int hi = (int) Math.floor(sample + radius - 0.5);
                lo = Math.min(Math.max(lo, 0), inSize - 1);
                hi = Math.min(Math.max(hi, 0), inSize - 1) + 1;
                double[] w = new double[hi - lo];
                double sum = 0;
                for (int s = lo; s < hi; s++) {
                    double pos = Math.abs((s + 0.5 - sample) / kernelScale);
                    w[s - lo] = Math.max(0.0, 1.0 - pos);
                    sum += w[s - lo];
                }
                if (sum > 0) {
                    for (int k = 0; k < w.length; k++) {
                        w[k] /= sum;
                    }
                }
                start[x] = lo;
                weights[x] = w;
            }
        }
    }
}
