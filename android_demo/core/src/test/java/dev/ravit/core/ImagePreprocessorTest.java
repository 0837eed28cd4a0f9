package dev.ravit.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.util.Arrays;

import org.junit.Test;

public class ImagePreprocessorTest {
    private static final TensorSpec UINT8 = TensorSpec.of("image", DType.UINT8, 1.0, 0, 1, 2, 3, 3);
    private static final TensorSpec FLOAT = TensorSpec.of("image", DType.FLOAT32, 0.0, 0, 1, 2, 3, 3);

    private static int[] filled(int n, int argb) {
        int[] p = new int[n];
        Arrays.fill(p, argb);
        return p;
    }

    @Test
    public void packsArgbAsRgbBytesRowMajor() {
        ImagePreprocessor pre = new ImagePreprocessor(UINT8);
        assertEquals(3, pre.width());
        assertEquals(2, pre.height());
        int[] pixels = {0xFF112233, 0x00FFFFFF, 0xFF000000, 0xFF010203, 0xFF808080, 0xFFFF0080};
        TensorData t = pre.toTensor(pixels);
        assertEquals(DType.UINT8, t.dtype());
        assertArrayEquals(new int[] {1, 2, 3, 3}, t.shape());
        assertArrayEquals(new int[] {0x11, 0x22, 0x33, 255, 255, 255, 0, 0, 0, 1, 2, 3, 128, 128, 128, 255, 0, 128},
                t.toIntArray());
    }

    @Test
    public void floatModelsGetFloatPixels() {
        TensorData t = new ImagePreprocessor(FLOAT).toTensor(filled(6, 0xFFFF8001));
        assertEquals(DType.FLOAT32, t.dtype());
        assertEquals(255f, t.floats()[0], 0);
        assertEquals(128f, t.floats()[1], 0);
        assertEquals(1f, t.floats()[2], 0);
    }

    @Test
    public void wrongPixelCountIsAClearError() {
        ImagePreprocessor pre = new ImagePreprocessor(UINT8);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> pre.toTensor(new int[5]));
        assertTrue(e.getMessage(), e.getMessage().contains("Got 5 pixels") && e.getMessage().contains("has 6"));
        e = assertThrows(IllegalArgumentException.class, () -> pre.toTensor(new int[6], 2, 3));
        assertTrue(e.getMessage(), e.getMessage().contains("2x3") && e.getMessage().contains("3x2"));
    }

    @Test
    public void unsupportedInputDtypeIsAClearError() {
        TensorSpec int8 = TensorSpec.of("image", DType.INT8, 0.5, -1, 1, 2, 3, 3);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new ImagePreprocessor(int8));
        assertTrue(e.getMessage(), e.getMessage().contains("dtype int8 is not supported"));
        TensorSpec int16 = TensorSpec.of("image", DType.INT16, 0.5, 0, 1, 2, 3, 3);
        assertThrows(IllegalArgumentException.class, () -> new ImagePreprocessor(int16));
        TensorSpec scaled = TensorSpec.of("image", DType.UINT8, 0.99, 0, 1, 2, 3, 3);
        e = assertThrows(IllegalArgumentException.class, () -> new ImagePreprocessor(scaled));
        assertTrue(e.getMessage(), e.getMessage().contains("scale 1"));
    }

    @Test
    public void unsupportedInputShapeIsAClearError() {
        TensorSpec rgba = TensorSpec.of("image", DType.UINT8, 1.0, 0, 1, 2, 3, 4);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new ImagePreprocessor(rgba));
        assertTrue(e.getMessage(), e.getMessage().contains("[1, 2, 3, 4]") && e.getMessage().contains("[1, H, W, 3]"));
    }

    @Test
    public void centerCropKeepsTheMiddle() {
        assertArrayEquals(new int[] {80, 0, 480, 480}, ImagePreprocessor.centerCropBox(640, 480, 32, 32));
        assertArrayEquals(new int[] {0, 80, 480, 480}, ImagePreprocessor.centerCropBox(480, 640, 32, 32));
        assertArrayEquals(new int[] {0, 0, 64, 64}, ImagePreprocessor.centerCropBox(64, 64, 32, 32));
        assertArrayEquals(new int[] {0, 60, 640, 360}, ImagePreprocessor.centerCropBox(640, 480, 16, 9));
    }

    @Test
    public void resizeKeepsAUniformColour() {
        int[] out = ImagePreprocessor.centerCropResize(filled(64 * 48, 0xFF336699), 64, 48, 32, 32);
        assertEquals(32 * 32, out.length);
        for (int p : out) {
            assertEquals(0xFF336699, p);
        }
        // Upscaling too.
        for (int p : ImagePreprocessor.resize(filled(6, 0xFF0A0B0C), 3, 2, 7, 5)) {
            assertEquals(0xFF0A0B0C, p);
        }
    }

    @Test
    public void sameSizeIsACopyWithOpaqueAlpha() {
        int[] src = {0x00010203, 0xFF040506};
        int[] out = ImagePreprocessor.resize(src, 2, 1, 2, 1);
        assertArrayEquals(new int[] {0xFF010203, 0xFF040506}, out);
    }

    @Test
    public void halvingAveragesFineStripes() {
        // Columns alternate black and white; an antialiased 2x shrink gives mid-grey inside.
        int w = 16;
        int h = 4;
        int[] src = new int[w * h];
        for (int i = 0; i < src.length; i++) {
            src[i] = (i % 2 == 0) ? 0xFF000000 : 0xFFFFFFFF;
        }
        int[] out = ImagePreprocessor.resize(src, w, h, w / 2, h / 2);
        for (int y = 0; y < h / 2; y++) {
            for (int x = 1; x < w / 2 - 1; x++) {
                int v = out[y * w / 2 + x] & 0xFF;  // 127.5, give or take the last bit.
                assertTrue("pixel " + x + "," + y + " = " + v, v == 127 || v == 128);
            }
        }
    }

    @Test
    public void rotationsCompose() {
        int[] src = {1, 2, 3, 4, 5, 6};  // 3 wide, 2 high.
        int[] r90 = ImagePreprocessor.rotate(src, 3, 2, 90);
        assertArrayEquals(new int[] {4, 1, 5, 2, 6, 3}, r90);  // 2 wide, 3 high.
        assertArrayEquals(src, ImagePreprocessor.rotate(r90, 2, 3, 270));
        assertArrayEquals(new int[] {6, 5, 4, 3, 2, 1}, ImagePreprocessor.rotate(src, 3, 2, 180));
        assertArrayEquals(src, ImagePreprocessor.rotate(src, 3, 2, 360));
        assertArrayEquals(ImagePreprocessor.rotate(src, 3, 2, 270), ImagePreprocessor.rotate(src, 3, 2, -90));
        assertThrows(IllegalArgumentException.class, () -> ImagePreprocessor.rotate(src, 3, 2, 45));
    }

    @Test
    public void fromFrameCropsResizesAndPacks() {
        ImagePreprocessor pre = new ImagePreprocessor(UINT8);
        TensorData t = pre.fromFrame(filled(40 * 30, 0xFF102030), 40, 30);
        assertArrayEquals(new int[] {1, 2, 3, 3}, t.shape());
        for (int i = 0; i < t.size(); i += 3) {
            assertEquals(0x10, t.getInt(i));
            assertEquals(0x30, t.getInt(i + 2));
        }
    }

    @Test
    public void pixelHelpersCheckTheirInput() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> ImagePreprocessor.centerCropResize(new int[10], 4, 3, 2, 2));
        assertTrue(e.getMessage(), e.getMessage().contains("Got 10 pixels; a 4x3 image has 12"));
        assertThrows(IllegalArgumentException.class, () -> ImagePreprocessor.resize(new int[4], 2, 2, 0, 2));
        assertThrows(IllegalArgumentException.class, () -> ImagePreprocessor.crop(new int[4], 2, 2, 1, 1, 2, 2));
    }
}
